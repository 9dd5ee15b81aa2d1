#include "base/host_memory.h"

#include <fstream>
#include <string>

namespace kiln {

uint64_t host_meminfo_bytes(std::string_view field) {
  std::ifstream meminfo("/proc/meminfo");
  std::string key;
  uint64_t kib = 0;
  const std::string wanted = std::string(field) + ":";
  while (meminfo >> key >> kib) {
    if (key == wanted) return kib * 1024;
    meminfo.ignore(256, '\n');
  }
  return 0;
}

}  // namespace kiln
