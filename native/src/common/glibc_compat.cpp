// Linked only into portable (prebuilt) addons, which carry libstdc++
// statically. GCC 12's libstdc++.a pulls std::random_device into every link
// (through its string instantiations), and random_device calls arc4random,
// new in glibc 2.36; bertkit never uses random_device. This private
// definition satisfies that reference so a prebuilt built on glibc 2.36 still
// loads on glibc 2.34 and 2.35 (Ubuntu 22.04, RHEL 9).
#include <sys/random.h>

#include <cstdint>

extern "C" __attribute__((visibility("hidden"))) uint32_t arc4random(void) {
  uint32_t value = 0;
  unsigned char* p = reinterpret_cast<unsigned char*>(&value);
  size_t got = 0;
  while (got < sizeof value) {
    ssize_t n = getrandom(p + got, sizeof value - got, 0);
    if (n > 0) got += static_cast<size_t>(n);
  }
  return value;
}
