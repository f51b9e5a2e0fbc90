# The CUDA variant of the addon: build/Release/cuda/bertkit_cuda.node, which holds
# the CPU backend and native/src/cuda behind the same dispatch point.
#
#   BERTKIT_CUDA=auto  build it when nvcc, the CUDA runtime and cuBLAS are found
#   BERTKIT_CUDA=on    the same, but stop with an error naming what is missing
#   BERTKIT_CUDA=off   CPU addon only
#
# Where the toolkit is looked for, in order: BERTKIT_NVCC / CMAKE_CUDA_COMPILER /
# $CUDACXX, $CUDAToolkit_ROOT, $CUDA_HOME, $CUDA_PATH, PATH, /usr/local/cuda, and
# the `nvidia` Python wheels of the python3 on PATH (scripts/build/install-cuda-toolkit.sh
# installs those). cuBLAS also honours $CUBLAS_INCLUDE_DIR / $CUBLAS_LIBRARY_DIR
# (what .device/boot.sh exports on the GPU machine).
#
# .cu files are compiled by a plain nvcc rule rather than CMake's CUDA language:
# CMake's compiler detection and FindCUDAToolkit expect a toolkit tree with an
# unversioned libcudart.so, which the wheels do not have, and a rule we own
# behaves the same on a system toolkit, the wheels and the GPU machine.

# auto: every architecture of this list that the nvcc knows -- T4/RTX 20 (75),
# A100 (80), A10/RTX 30 (86), L4/RTX 40 (89), H100/H200 (90), B200 (100),
# RTX 50/RTX PRO (120) -- with PTX of the newest for GPUs after it. An explicit
# list is built as given, and an SM the nvcc lacks is an error.
set(BERTKIT_CUDA_ARCHS "auto" CACHE STRING
  "SM versions to build SASS for, e.g. 80;90, or auto; PTX for the last one is added for newer GPUs")
set(_bk_auto_archs 75 80 86 89 90 100 120)
set(BERTKIT_CUDA_FLAGS "" CACHE STRING "Extra nvcc flags for the CUDA variant")

if(CMAKE_LIBRARY_OUTPUT_DIRECTORY)
  set(_bk_out_dir "${CMAKE_LIBRARY_OUTPUT_DIRECTORY}/cuda")
else()
  set(_bk_out_dir "${CMAKE_BINARY_DIR}/Release/cuda")
endif()
# A CUDA addon left by an earlier configuration would still be loaded first.
macro(bertkit_drop_stale_cuda_addon)
  file(REMOVE "${_bk_out_dir}/bertkit_cuda.node")
endmacro()

if(BERTKIT_CUDA STREQUAL "off")
  message(STATUS "bertkit: CUDA variant off (BERTKIT_CUDA=off)")
  bertkit_drop_stale_cuda_addon()
  return()
endif()
if(NOT BERTKIT_CUDA MATCHES "^(auto|on)$")
  message(FATAL_ERROR "bertkit: BERTKIT_CUDA must be auto, on or off (got '${BERTKIT_CUDA}')")
endif()

# ---- where the pip wheels live ------------------------------------------------
# `nvidia` is a namespace package; every entry of its __path__ may hold a part.
set(_bk_wheel_dirs "")
find_program(BERTKIT_PYTHON3 NAMES python3 python)
if(BERTKIT_PYTHON3)
  execute_process(
    COMMAND "${BERTKIT_PYTHON3}" -c "import nvidia; print(';'.join(nvidia.__path__))"
    OUTPUT_VARIABLE _bk_wheel_dirs RESULT_VARIABLE _bk_rc ERROR_QUIET OUTPUT_STRIP_TRAILING_WHITESPACE)
  if(NOT _bk_rc EQUAL 0)
    set(_bk_wheel_dirs "")
  endif()
endif()
# CUDA 13 wheels share one toolkit-shaped tree (nvidia/cu13/{bin,include,lib});
# CUDA 12 wheels are split per package (nvidia/cuda_runtime, nvidia/cublas, ...).
set(_bk_wheel_roots "")
set(_bk_wheel_split "")
foreach(_d IN LISTS _bk_wheel_dirs)
  foreach(_v 14 13 12)
    if(EXISTS "${_d}/cu${_v}")
      list(APPEND _bk_wheel_roots "${_d}/cu${_v}")
    endif()
  endforeach()
  list(APPEND _bk_wheel_split "${_d}")
endforeach()

# ---- nvcc -----------------------------------------------------------------------
set(_bk_missing "")
if(NOT BERTKIT_NVCC)
  if(CMAKE_CUDA_COMPILER)
    set(BERTKIT_NVCC "${CMAKE_CUDA_COMPILER}" CACHE FILEPATH "nvcc used for the CUDA variant")
  elseif(DEFINED ENV{CUDACXX} AND EXISTS "$ENV{CUDACXX}")
    set(BERTKIT_NVCC "$ENV{CUDACXX}" CACHE FILEPATH "nvcc used for the CUDA variant")
  endif()
endif()
set(_bk_nvcc_hints "")
foreach(_e CUDAToolkit_ROOT CUDA_HOME CUDA_PATH)
  if(DEFINED ENV{${_e}})
    list(APPEND _bk_nvcc_hints "$ENV{${_e}}/bin")
  endif()
endforeach()
set(_bk_nvcc_wheel_paths "")
foreach(_r IN LISTS _bk_wheel_roots)
  list(APPEND _bk_nvcc_wheel_paths "${_r}/bin")
endforeach()
foreach(_d IN LISTS _bk_wheel_split)
  list(APPEND _bk_nvcc_wheel_paths "${_d}/cuda_nvcc/bin")
endforeach()
find_program(BERTKIT_NVCC NAMES nvcc
  HINTS ${_bk_nvcc_hints}
  PATHS /usr/local/cuda/bin /opt/cuda/bin ${_bk_nvcc_wheel_paths})

set(_bk_cuda_version "")
set(_bk_cuda_major "")
if(BERTKIT_NVCC)
  execute_process(COMMAND "${BERTKIT_NVCC}" --version
    OUTPUT_VARIABLE _bk_out ERROR_VARIABLE _bk_err RESULT_VARIABLE _bk_rc)
  if(_bk_rc EQUAL 0 AND _bk_out MATCHES "release ([0-9]+)\\.([0-9]+)")
    set(_bk_cuda_major "${CMAKE_MATCH_1}")
    set(_bk_cuda_version "${CMAKE_MATCH_1}.${CMAKE_MATCH_2}")
  else()
    string(REPLACE ";" "," _bk_err "${_bk_err}")
    list(APPEND _bk_missing "a working nvcc (${BERTKIT_NVCC} --version failed: ${_bk_err})")
  endif()
else()
  list(APPEND _bk_missing "nvcc (set CUDACXX, put it on PATH, or run scripts/build/install-cuda-toolkit.sh: the CUDA 12 nvcc wheel ships only ptxas, CUDA 13 wheels have a full nvcc)")
endif()

# ---- CUDA runtime and cuBLAS headers and libraries ------------------------------
if(_bk_cuda_major)
  get_filename_component(_bk_nvcc_real "${BERTKIT_NVCC}" REALPATH)
  get_filename_component(_bk_toolkit_root "${_bk_nvcc_real}/../.." ABSOLUTE)
  if(CMAKE_SYSTEM_PROCESSOR MATCHES "aarch64|arm64")
    set(_bk_target sbsa-linux)
  else()
    set(_bk_target x86_64-linux)
  endif()
  # The toolkit of this nvcc first, then wheels of the same major version, so a
  # CUDA 12 nvcc never pairs with CUDA 13 headers when both are installed.
  set(_bk_inc_dirs "${_bk_toolkit_root}/include" "${_bk_toolkit_root}/targets/${_bk_target}/include")
  set(_bk_lib_dirs "${_bk_toolkit_root}/lib64" "${_bk_toolkit_root}/lib" "${_bk_toolkit_root}/targets/${_bk_target}/lib")
  foreach(_d IN LISTS _bk_wheel_split)
    if(EXISTS "${_d}/cu${_bk_cuda_major}")
      list(APPEND _bk_inc_dirs "${_d}/cu${_bk_cuda_major}/include")
      list(APPEND _bk_lib_dirs "${_d}/cu${_bk_cuda_major}/lib")
    endif()
    if(_bk_cuda_major STREQUAL "12")
      list(APPEND _bk_inc_dirs "${_d}/cuda_runtime/include" "${_d}/cublas/include" "${_d}/cuda_cccl/include")
      list(APPEND _bk_lib_dirs "${_d}/cuda_runtime/lib" "${_d}/cublas/lib")
    endif()
  endforeach()
  list(APPEND _bk_inc_dirs /usr/include)
  list(APPEND _bk_lib_dirs /usr/lib/${CMAKE_LIBRARY_ARCHITECTURE} /usr/lib64 /usr/lib)

  set(_bk_cublas_inc_dirs "")
  set(_bk_cublas_lib_dirs "")
  if(DEFINED ENV{CUBLAS_INCLUDE_DIR})
    list(APPEND _bk_cublas_inc_dirs "$ENV{CUBLAS_INCLUDE_DIR}")
  endif()
  if(DEFINED ENV{CUBLAS_LIBRARY_DIR})
    list(APPEND _bk_cublas_lib_dirs "$ENV{CUBLAS_LIBRARY_DIR}")
  endif()

  find_path(BERTKIT_CUDART_INCLUDE_DIR cuda_runtime.h PATHS ${_bk_inc_dirs} NO_DEFAULT_PATH)
  find_path(BERTKIT_CUBLAS_INCLUDE_DIR cublas_v2.h PATHS ${_bk_cublas_inc_dirs} ${_bk_inc_dirs} NO_DEFAULT_PATH)
  # Static cudart: the addon then needs no CUDA library at load time (cudart
  # opens the driver itself), so one binary loads on any machine and says
  # what is missing instead of failing to load.
  find_library(BERTKIT_CUDART_LIBRARY NAMES cudart_static libcudart_static.a
    PATHS ${_bk_lib_dirs} NO_DEFAULT_PATH)
  # cuBLAS is opened at run time (native/src/cuda/cublas_api.h): only its
  # header is needed here.
  string(REPLACE ";" " " _bk_inc_text "${_bk_cublas_inc_dirs};${_bk_inc_dirs}")
  string(REPLACE ";" " " _bk_lib_text "${_bk_cublas_lib_dirs};${_bk_lib_dirs}")
  if(NOT BERTKIT_CUDART_INCLUDE_DIR)
    list(APPEND _bk_missing "cuda_runtime.h for CUDA ${_bk_cuda_version} (searched ${_bk_inc_text})")
  endif()
  if(NOT BERTKIT_CUBLAS_INCLUDE_DIR)
    list(APPEND _bk_missing "cublas_v2.h for CUDA ${_bk_cuda_version} (set CUBLAS_INCLUDE_DIR; searched ${_bk_inc_text})")
  endif()
  if(NOT BERTKIT_CUDART_LIBRARY)
    list(APPEND _bk_missing "libcudart_static.a for CUDA ${_bk_cuda_version} (searched ${_bk_lib_text})")
  endif()
endif()

# NCCL for process groups on CUDA tensors (native/src/distributed/nccl_group.cu):
# only nccl.h is needed here, libnccl.so.2 is opened at run time. Without it
# the CUDA variant still builds, and backend 'nccl' says what to install.
set(BERTKIT_NCCL "auto" CACHE STRING "NCCL in the CUDA variant: auto (when nccl.h is found), on, off")
set(_bk_nccl_flags "")
if(_bk_cuda_major AND NOT BERTKIT_NCCL STREQUAL "off")
  set(_bk_nccl_inc_dirs "")
  if(DEFINED ENV{NCCL_INCLUDE_DIR})
    list(APPEND _bk_nccl_inc_dirs "$ENV{NCCL_INCLUDE_DIR}")
  endif()
  foreach(_d IN LISTS _bk_wheel_split)
    list(APPEND _bk_nccl_inc_dirs "${_d}/nccl/include")
  endforeach()
  find_path(BERTKIT_NCCL_INCLUDE_DIR nccl.h PATHS ${_bk_nccl_inc_dirs} ${_bk_inc_dirs} NO_DEFAULT_PATH)
  if(BERTKIT_NCCL_INCLUDE_DIR)
    set(_bk_nccl_flags -isystem "${BERTKIT_NCCL_INCLUDE_DIR}" -DBERTKIT_WITH_NCCL)
  elseif(BERTKIT_NCCL STREQUAL "on")
    list(APPEND _bk_missing "nccl.h (BERTKIT_NCCL=on; pip install nvidia-nccl-cu${_bk_cuda_major} or set NCCL_INCLUDE_DIR)")
  endif()
endif()

# ---- architectures --------------------------------------------------------------
set(_bk_gencode "")
set(_bk_arch_text "")
if(_bk_cuda_major AND NOT _bk_missing)
  execute_process(COMMAND "${BERTKIT_NVCC}" --list-gpu-code
    OUTPUT_VARIABLE _bk_supported RESULT_VARIABLE _bk_rc ERROR_QUIET)
  if(BERTKIT_CUDA_ARCHS STREQUAL "auto")
    set(_bk_archs "")
    foreach(_a IN LISTS _bk_auto_archs)
      if(NOT _bk_rc EQUAL 0 OR _bk_supported MATCHES "sm_${_a}[^0-9af]")
        list(APPEND _bk_archs ${_a})
      endif()
    endforeach()
  else()
    set(_bk_archs ${BERTKIT_CUDA_ARCHS})
  endif()
  list(REMOVE_DUPLICATES _bk_archs)
  list(SORT _bk_archs COMPARE NATURAL)
  if(NOT _bk_archs)
    list(APPEND _bk_missing "BERTKIT_CUDA_ARCHS is empty")
  endif()
  foreach(_a IN LISTS _bk_archs)
    if(NOT _a MATCHES "^[0-9]+[af]?$")
      message(FATAL_ERROR "bertkit: BERTKIT_CUDA_ARCHS entries are SM numbers such as 80;90 (got '${_a}')")
    endif()
    if(_bk_rc EQUAL 0 AND NOT _bk_supported MATCHES "sm_${_a}[^0-9af]")
      string(REGEX REPLACE "[\n;]+" " " _bk_supported_text "${_bk_supported}")
      list(APPEND _bk_missing "nvcc ${_bk_cuda_version} support for sm_${_a} (it knows: ${_bk_supported_text})")
    endif()
    list(APPEND _bk_gencode "--generate-code=arch=compute_${_a},code=sm_${_a}")
    string(APPEND _bk_arch_text "sm_${_a} ")
  endforeach()
  # PTX of the newest architecture lets the driver JIT for GPUs newer than the list.
  list(GET _bk_archs -1 _bk_ptx)
  list(APPEND _bk_gencode "--generate-code=arch=compute_${_bk_ptx},code=compute_${_bk_ptx}")
  string(APPEND _bk_arch_text "+ compute_${_bk_ptx} PTX")
endif()

# ---- the common nvcc command line, and a compile probe --------------------------
set(_bk_include_flags "")
foreach(_d "${PROJECT_SOURCE_DIR}/native/include" "${PROJECT_SOURCE_DIR}/native/src" "${CMAKE_CURRENT_BINARY_DIR}/bertkit_cuda")
  list(APPEND _bk_include_flags "-I${_d}")
endforeach()
if(NOT _bk_missing)
  # De-duplicate the directories, not the flags: removing a repeated "-isystem"
  # token would leave a bare path that nvcc reads as a second input file.
  set(_bk_system_dirs "${BERTKIT_CUDART_INCLUDE_DIR}" "${BERTKIT_CUBLAS_INCLUDE_DIR}")
  list(REMOVE_DUPLICATES _bk_system_dirs)
  foreach(_d IN LISTS _bk_system_dirs)
    list(APPEND _bk_include_flags -isystem "${_d}")
  endforeach()
endif()
separate_arguments(_bk_user_flags UNIX_COMMAND "${BERTKIT_CUDA_FLAGS}")
# No --use_fast_math: GELU's erf, tanh and divisions must match the CPU backend.
set(_bk_nvcc_flags
  -std=c++17 -O3 -lineinfo -ccbin "${CMAKE_CXX_COMPILER}"
  "-Xcompiler=-fPIC,-O3,-Wall,-Wextra"
  -DBERTKIT_WITH_CUDA
  ${_bk_gencode} ${_bk_include_flags} ${_bk_nccl_flags} ${_bk_user_flags})

if(NOT _bk_missing)
  # Compiling one tiny file catches an nvcc that runs but cannot compile (host
  # compiler too new, cicc missing) while `auto` can still fall back to CPU only.
  set(_bk_probe_key "${BERTKIT_NVCC}|${_bk_nvcc_flags}")
  if(NOT BERTKIT_CUDA_PROBED STREQUAL _bk_probe_key)
    set(_bk_probe_dir "${CMAKE_CURRENT_BINARY_DIR}/bertkit_cuda_probe")
    file(MAKE_DIRECTORY "${_bk_probe_dir}")
    file(WRITE "${_bk_probe_dir}/probe.cu"
      "#include <cuda_runtime.h>\n#include <cublas_v2.h>\n"
      "__global__ void probe(float* x) { x[threadIdx.x] = erff(x[threadIdx.x]); }\n"
      "cublasStatus_t make(cublasHandle_t* h) { probe<<<1, 1>>>(nullptr); return cublasCreate(h); }\n")
    list(GET _bk_archs 0 _bk_first)
    execute_process(
      COMMAND "${BERTKIT_NVCC}" -std=c++17 -ccbin "${CMAKE_CXX_COMPILER}" -Xcompiler=-fPIC
              --generate-code=arch=compute_${_bk_first},code=sm_${_bk_first}
              -isystem "${BERTKIT_CUDART_INCLUDE_DIR}" -isystem "${BERTKIT_CUBLAS_INCLUDE_DIR}" ${_bk_user_flags}
              -c probe.cu -o probe.o
      WORKING_DIRECTORY "${_bk_probe_dir}"
      RESULT_VARIABLE _bk_rc OUTPUT_VARIABLE _bk_out ERROR_VARIABLE _bk_err)
    if(_bk_rc EQUAL 0)
      set(BERTKIT_CUDA_PROBED "${_bk_probe_key}" CACHE INTERNAL "nvcc command line that compiled the probe")
    else()
      string(REPLACE ";" "," _bk_err "${_bk_out}${_bk_err}")
      list(APPEND _bk_missing "an nvcc that compiles (${BERTKIT_NVCC} failed on a probe file: ${_bk_err})")
    endif()
  endif()
endif()

if(_bk_missing)
  string(REPLACE ";" "\n  - " _bk_text "${_bk_missing}")
  if(BERTKIT_CUDA STREQUAL "on")
    message(FATAL_ERROR "bertkit: BERTKIT_CUDA=on but the CUDA variant cannot be built. Missing:\n  - ${_bk_text}\n"
      "Install a CUDA toolkit with cuBLAS, or run scripts/build/install-cuda-toolkit.sh (PyPI wheels, no GPU needed).")
  endif()
  message(STATUS "bertkit: CUDA variant skipped (BERTKIT_CUDA=auto), building the CPU addon only. Missing:\n  - ${_bk_text}")
  bertkit_drop_stale_cuda_addon()
  return()
endif()

# ---- the nvcc rule and the addon target -----------------------------------------
# What this build was made for, so the backend can say it when a GPU does not fit.
file(CONFIGURE OUTPUT "${CMAKE_CURRENT_BINARY_DIR}/bertkit_cuda/bertkit_cuda_config.h" CONTENT
"#pragma once\n#define BERTKIT_CUDA_ARCHS_TEXT \"${_bk_arch_text}\"\n#define BERTKIT_CUDA_BUILD_VERSION \"${_bk_cuda_version}\"\n#define BERTKIT_CUDART_LINKAGE \"static (CUDA ${_bk_cuda_version})\"\n" @ONLY)

file(GLOB BERTKIT_CUDA_SOURCES CONFIGURE_DEPENDS "${PROJECT_SOURCE_DIR}/native/src/cuda/*.cu"
  "${PROJECT_SOURCE_DIR}/native/src/distributed/*.cu")
# Every .cu depends on every project header: a handful of files, so a coarse
# rule costs little and cannot miss a dependency the way a stale depfile can.
file(GLOB_RECURSE _bk_headers CONFIGURE_DEPENDS
  "${PROJECT_SOURCE_DIR}/native/include/*.h" "${PROJECT_SOURCE_DIR}/native/src/cuda/*.h"
  "${PROJECT_SOURCE_DIR}/native/src/distributed/*.h"
  "${PROJECT_SOURCE_DIR}/native/src/cuda/*.cuh")
list(APPEND _bk_headers "${CMAKE_CURRENT_BINARY_DIR}/bertkit_cuda/bertkit_cuda_config.h")

set(BERTKIT_CUDA_OBJECTS "")
foreach(_src IN LISTS BERTKIT_CUDA_SOURCES)
  get_filename_component(_name "${_src}" NAME_WE)
  set(_obj "${CMAKE_CURRENT_BINARY_DIR}/bertkit_cuda/${_name}.cu.o")
  add_custom_command(
    OUTPUT "${_obj}"
    COMMAND "${BERTKIT_NVCC}" ${_bk_nvcc_flags} -c "${_src}" -o "${_obj}"
    DEPENDS "${_src}" ${_bk_headers}
    COMMENT "nvcc ${_name}.cu"
    VERBATIM)
  set_source_files_properties("${_obj}" PROPERTIES EXTERNAL_OBJECT TRUE GENERATED TRUE)
  list(APPEND BERTKIT_CUDA_OBJECTS "${_obj}")
endforeach()

bertkit_addon(bertkit_cuda ${BERTKIT_CUDA_OBJECTS})
target_compile_definitions(bertkit_cuda PRIVATE BERTKIT_WITH_CUDA)
target_link_libraries(bertkit_cuda PRIVATE "${BERTKIT_CUDART_LIBRARY}" ${CMAKE_DL_LIBS} rt Threads::Threads)

set_target_properties(bertkit_cuda PROPERTIES LIBRARY_OUTPUT_DIRECTORY "${_bk_out_dir}")

message(STATUS "bertkit: CUDA variant on: nvcc ${_bk_cuda_version} (${BERTKIT_NVCC}), ${_bk_arch_text}")
message(STATUS "bertkit:   cudart ${BERTKIT_CUDART_LIBRARY} (static), cuBLAS opened at run time -> ${_bk_out_dir}/bertkit_cuda.node")
if(BERTKIT_NCCL_INCLUDE_DIR AND NOT BERTKIT_NCCL STREQUAL "off")
  message(STATUS "bertkit:   NCCL from ${BERTKIT_NCCL_INCLUDE_DIR}/nccl.h, libnccl.so.2 opened at run time")
  target_compile_definitions(bertkit_cuda PRIVATE BERTKIT_WITH_NCCL)
else()
  message(STATUS "bertkit:   no NCCL (nccl.h not found or BERTKIT_NCCL=off): backend 'nccl' unavailable")
endif()
