# Cross-compiling jsonbus for 64-bit Windows with mingw-w64 (Debian: gcc-mingw-w64-x86-64,
# g++-mingw-w64-x86-64), and running the C tests under Wine:
#
#   cmake -S . -B build-windows -DCMAKE_TOOLCHAIN_FILE=cmake/mingw-w64-x86_64.cmake
#   cmake --build build-windows -j2 && ctest --test-dir build-windows
#
# (tests/windows.sh does all of it, with a Wine prefix of its own.) cargo builds the library
# with --target x86_64-pc-windows-gnu (JSONBUS_RUST_TARGET) into target/x86_64-pc-windows-gnu.
set(CMAKE_SYSTEM_NAME Windows)
set(CMAKE_SYSTEM_PROCESSOR x86_64)

set(_jsonbus_mingw_prefix x86_64-w64-mingw32)
# The "posix" thread model where there is a choice (Debian: -posix and -win32 variants, the
# plain names default to win32): GCC 12's win32 model has no std::thread or std::mutex, which
# jsonbus.hpp uses.
find_program(_jsonbus_mingw_gcc NAMES ${_jsonbus_mingw_prefix}-gcc-posix ${_jsonbus_mingw_prefix}-gcc)
find_program(_jsonbus_mingw_gxx NAMES ${_jsonbus_mingw_prefix}-g++-posix ${_jsonbus_mingw_prefix}-g++)
if(NOT _jsonbus_mingw_gcc OR NOT _jsonbus_mingw_gxx)
  message(FATAL_ERROR "${_jsonbus_mingw_prefix}-gcc/g++ not found: install mingw-w64 "
                      "(Debian: gcc-mingw-w64-x86-64 g++-mingw-w64-x86-64)")
endif()
set(CMAKE_C_COMPILER ${_jsonbus_mingw_gcc})
set(CMAKE_CXX_COMPILER ${_jsonbus_mingw_gxx})
set(CMAKE_RC_COMPILER ${_jsonbus_mingw_prefix}-windres)

# Headers and libraries of the target only from the mingw sysroot; programs from the host.
set(CMAKE_FIND_ROOT_PATH /usr/${_jsonbus_mingw_prefix})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)

# ctest (and add_test's COMMAND of a built program) runs the .exe files through Wine.
find_program(JSONBUS_WINE NAMES wine wine64)
if(JSONBUS_WINE)
  set(CMAKE_CROSSCOMPILING_EMULATOR "${JSONBUS_WINE}")
endif()

# The Rust target whose artifacts (jsonbus.dll, libjsonbus.dll.a, libjsonbus.a) CMake links.
set(JSONBUS_RUST_TARGET x86_64-pc-windows-gnu CACHE STRING "cargo --target for the library")
