// HostMemory: what /proc/meminfo says about this host's memory, for sizing
// guests and choosing where a bake may work in RAM.
#pragma once

#include <cstdint>
#include <string_view>

namespace kiln {

// A /proc/meminfo field ("MemTotal", "MemAvailable") in bytes; 0 when absent.
uint64_t host_meminfo_bytes(std::string_view field);

}  // namespace kiln
