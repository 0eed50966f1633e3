# Every third-party package the project links, found once. scripts/setup.sh installs them.
find_package(Threads REQUIRED)
# Debian's LibTorch 1.13 (CPU). For CUDA, configure with -DTorch_DIR=<libtorch>/share/cmake/Torch.
find_package(Torch REQUIRED)
find_package(OpenCV REQUIRED COMPONENTS core imgproc imgcodecs)
find_package(yaml-cpp REQUIRED)
find_package(nlohmann_json 3.9 REQUIRED)
find_package(CLI11 REQUIRED)
find_package(spdlog REQUIRED)
find_package(ZLIB REQUIRED)
if(WICO_BUILD_TESTS)
  find_package(GTest REQUIRED)
endif()
# TorchConfig appends its own flags (e.g. -D_GLIBCXX_USE_CXX11_ABI); keep them on our targets.
string(APPEND CMAKE_CXX_FLAGS " ${TORCH_CXX_FLAGS}")
