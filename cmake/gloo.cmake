# The Gloo shim: build/Release/bertkit_gloo.so, the CPU collectives of a
# process group (native/src/distributed/gloo_shim.cpp). It is the only binary that
# links Gloo; the addons open it at run time (distributed/gloo_group.cpp), so they
# load and train on one process wherever Gloo is missing.
#
#   BERTKIT_GLOO=auto  build it when Gloo's headers and library are found
#   BERTKIT_GLOO=on    the same, but stop with an error when they are not
#   BERTKIT_GLOO=off   no shim (backend 'gloo' then says how to get it)
#
# Debian/Ubuntu: apt-get install libgloo-dev. GLOO_ROOT may point at another
# install prefix. Debian ships libgloo as a shared library only, so the shim
# needs libgloo.so.0 at run time and is not part of the prebuilt binaries.
set(BERTKIT_GLOO "auto" CACHE STRING "Gloo shim for CPU data parallel: auto, on, off")
if(NOT BERTKIT_GLOO MATCHES "^(auto|on|off)$")
  message(FATAL_ERROR "bertkit: BERTKIT_GLOO must be auto, on or off (got '${BERTKIT_GLOO}')")
endif()

if(CMAKE_LIBRARY_OUTPUT_DIRECTORY)
  set(_bk_gloo_out "${CMAKE_LIBRARY_OUTPUT_DIRECTORY}")
else()
  set(_bk_gloo_out "${CMAKE_BINARY_DIR}/Release")
endif()

if(BERTKIT_GLOO STREQUAL "off")
  message(STATUS "bertkit: Gloo shim off (BERTKIT_GLOO=off)")
  file(REMOVE "${_bk_gloo_out}/bertkit_gloo.so")
  return()
endif()

set(_bk_gloo_hints "")
if(DEFINED ENV{GLOO_ROOT})
  list(APPEND _bk_gloo_hints "$ENV{GLOO_ROOT}")
endif()
find_path(BERTKIT_GLOO_INCLUDE_DIR gloo/allreduce.h HINTS ${_bk_gloo_hints} PATH_SUFFIXES include)
find_library(BERTKIT_GLOO_LIBRARY NAMES gloo HINTS ${_bk_gloo_hints} PATH_SUFFIXES lib lib64)
if(NOT BERTKIT_GLOO_INCLUDE_DIR OR NOT BERTKIT_GLOO_LIBRARY)
  if(BERTKIT_GLOO STREQUAL "on")
    message(FATAL_ERROR "bertkit: BERTKIT_GLOO=on but Gloo was not found (headers: ${BERTKIT_GLOO_INCLUDE_DIR}, "
      "library: ${BERTKIT_GLOO_LIBRARY}). Install it (Debian/Ubuntu: apt-get install libgloo-dev) or set GLOO_ROOT.")
  endif()
  message(STATUS "bertkit: Gloo not found, no CPU data parallel (apt-get install libgloo-dev, then rebuild)")
  file(REMOVE "${_bk_gloo_out}/bertkit_gloo.so")
  return()
endif()

add_library(bertkit_gloo MODULE native/src/distributed/gloo_shim.cpp)
set_target_properties(bertkit_gloo PROPERTIES PREFIX "" SUFFIX ".so" LIBRARY_OUTPUT_DIRECTORY "${_bk_gloo_out}"
  CXX_VISIBILITY_PRESET hidden VISIBILITY_INLINES_HIDDEN ON)
target_include_directories(bertkit_gloo PRIVATE ${BERTKIT_GLOO_INCLUDE_DIR})
target_compile_options(bertkit_gloo PRIVATE -O2 -Wall -Wextra)
target_link_libraries(bertkit_gloo PRIVATE ${BERTKIT_GLOO_LIBRARY} Threads::Threads)
message(STATUS "bertkit: Gloo shim on (${BERTKIT_GLOO_LIBRARY}) -> ${_bk_gloo_out}/bertkit_gloo.so")
