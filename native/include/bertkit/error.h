// Errors crossing the native boundary. Backends throw bertkit::Error; the
// Node-API layer turns it into a JavaScript Error carrying the message.
#pragma once

#include <stdexcept>
#include <string>

namespace bertkit {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

// Out of memory on a device: carries the size asked for so the message can
// advise the user (the Node-API layer maps it to code "ERR_BERTKIT_OOM").
class OutOfMemory : public Error {
 public:
  OutOfMemory(const std::string& message, size_t bytes) : Error(message), bytes_requested(bytes) {}
  size_t bytes_requested;
};

}  // namespace bertkit
