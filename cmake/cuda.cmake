# Placeholder: the CUDA variant (helper-owned). Off until it lands.
if(BERTKIT_CUDA STREQUAL "on")
  message(FATAL_ERROR "bertkit: the CUDA variant is not wired yet")
endif()
