# Build options of WiCo++ and the compiler settings they switch on.
option(WICO_BUILD_TESTS "Build the GoogleTest suite" ON)
option(WICO_USE_PCH "Precompile the LibTorch headers for the library" ON)
option(WICO_USE_CCACHE "Use ccache when it is installed" ON)
option(WICO_SANITIZE "Build with AddressSanitizer and UndefinedBehaviorSanitizer" OFF)
option(WICO_WERROR "Treat compiler warnings as errors" OFF)
option(WICO_BUILD_FUZZERS "Build libFuzzer targets (needs clang)" OFF)

if(WICO_USE_CCACHE)
  find_program(WICO_CCACHE ccache)
  if(WICO_CCACHE)
    set(CMAKE_CXX_COMPILER_LAUNCHER "${WICO_CCACHE}")
    # A precompiled header is only reusable by ccache when its time stamps are ignored.
    set(ENV{CCACHE_SLOPPINESS} "pch_defines,time_macros,include_file_mtime,include_file_ctime")
  endif()
endif()

if(WICO_SANITIZE)
  add_compile_options(-fsanitize=address,undefined -fno-omit-frame-pointer)
  add_link_options(-fsanitize=address,undefined)
endif()

function(wico_set_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra)
  if(WICO_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
endfunction()

# Loading the LibTorch precompiled header costs about 10 s a translation unit (it is ~550 MB),
# which only pays off where LibTorch is used: sources that never mention torch compile without it.
function(wico_pch_only_where_torch_is_used)
  foreach(source ${ARGN})
    file(READ "${source}" content)
    string(FIND "${content}" "torch" uses_torch)
    if(uses_torch EQUAL -1)
      set_source_files_properties("${source}" PROPERTIES SKIP_PRECOMPILE_HEADERS ON)
    endif()
  endforeach()
endfunction()
