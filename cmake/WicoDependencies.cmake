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
# OpenMP: LibTorch's at::parallel_for is a header template that runs its body on one thread unless
# the calling translation unit is compiled with OpenMP (_OPENMP decides, ATen/ParallelOpenMP.h), so
# our own kernels (deformable attention, Winograd transforms, the mask pass, Swin's windows) need
# it to use more than one core. GCC's -fopenmp links libgomp, the runtime Debian's LibTorch uses.
find_package(OpenMP REQUIRED COMPONENTS CXX)
if(WICO_BUILD_TESTS)
  find_package(GTest REQUIRED)
endif()
# TorchConfig appends its own flags (e.g. -D_GLIBCXX_USE_CXX11_ABI); keep them on our targets.
string(APPEND CMAKE_CXX_FLAGS " ${TORCH_CXX_FLAGS}")
# c10d (distributed training) is inside libtorch, but its headers hide each backend behind
# USE_C10D_<NAME>, which TorchConfig does not set. Gloo needs its headers (libgloo-dev, or those a
# LibTorch download bundles); NCCL needs a CUDA LibTorch and nccl.h. The definitions are applied to
# src/train/distributed.cpp alone (CMakeLists.txt), the only file that includes c10d.
set(WICO_C10D_DEFINITIONS "")
set(WICO_C10D_INCLUDE_DIRS "")
find_path(WICO_GLOO_INCLUDE_DIR gloo/algorithm.h HINTS ${TORCH_INCLUDE_DIRS})
if(WICO_GLOO_INCLUDE_DIR)
  list(APPEND WICO_C10D_DEFINITIONS USE_C10D_GLOO)
endif()
if(TARGET torch_cuda)
  find_path(WICO_NCCL_INCLUDE_DIR nccl.h HINTS ${TORCH_INCLUDE_DIRS} ${CUDA_TOOLKIT_ROOT_DIR}/include)
  if(WICO_NCCL_INCLUDE_DIR)
    list(APPEND WICO_C10D_DEFINITIONS USE_C10D_NCCL)
    set(WICO_C10D_INCLUDE_DIRS ${WICO_NCCL_INCLUDE_DIR})
  endif()
endif()
message(STATUS "WiCo++ distributed backends: ${WICO_C10D_DEFINITIONS}")
# HDF5's C library (libhdf5-dev): Keras HDF5 weight files (MCN's and VLT's), read by
# src/io/keras_h5.cpp alone. Optional: without it such a file is an error that says to install it.
# (Found by hand: CMake's FindHDF5 needs the C language enabled for its probe.)
find_path(WICO_HDF5_INCLUDE_DIR hdf5.h PATH_SUFFIXES hdf5/serial)
find_library(WICO_HDF5_LIBRARY NAMES hdf5_serial hdf5 PATH_SUFFIXES hdf5/serial)
if(WICO_HDF5_INCLUDE_DIR AND WICO_HDF5_LIBRARY)
  set(WICO_HAVE_HDF5 ON)
  message(STATUS "WiCo++ Keras HDF5 weights: ${WICO_HDF5_LIBRARY}")
else()
  set(WICO_HAVE_HDF5 OFF)
  message(STATUS "WiCo++ Keras HDF5 weights: off (install libhdf5-dev)")
endif()
# oneDNN (libdnnl-dev): the same library Debian's LibTorch runs its CPU convolutions on, called
# directly by src/nn/winograd_conv.cpp for Winograd 3x3 convolutions. Optional: without it every
# convolution runs LibTorch's own kernel.
find_path(WICO_DNNL_INCLUDE_DIR oneapi/dnnl/dnnl.hpp)
find_library(WICO_DNNL_LIBRARY NAMES dnnl)
if(WICO_DNNL_INCLUDE_DIR AND WICO_DNNL_LIBRARY)
  set(WICO_HAVE_DNNL ON)
  message(STATUS "WiCo++ oneDNN: ${WICO_DNNL_LIBRARY} (Winograd convolutions)")
else()
  set(WICO_HAVE_DNNL OFF)
  message(STATUS "WiCo++ oneDNN: not found (install libdnnl-dev for Winograd convolutions)")
endif()
