#include "base/vm_shape.h"

#include <algorithm>

#include <fmt/format.h>

#include "base/size.h"

namespace kiln {

std::string vm_memory_problem(uint64_t bytes) {
  if (bytes < kMinVmMemoryMiB * kMiB)
    return fmt::format("{} is less than the {} MiB a Debian guest needs to boot", format_size(bytes),
                       kMinVmMemoryMiB);
  if (bytes / kMiB > kMaxVmMemoryMiB)
    return fmt::format("{} MiB is more than the {} MiB ({}) a VM may have", bytes / kMiB, kMaxVmMemoryMiB,
                       format_size(kMaxVmMemoryMiB * kMiB));
  return "";
}

std::string vm_memory_mib_problem(uint64_t mib) {
  // Capped first, so that a number too big for bytes is still "too big".
  return vm_memory_problem(std::min(mib, kMaxVmMemoryMiB + 1) * kMiB);
}

std::string vm_vcpus_problem(int64_t count) {
  if (count < 1 || count > kMaxVmVcpus) return fmt::format("{} virtual CPUs: expected 1 to {}", count, kMaxVmVcpus);
  return "";
}

}  // namespace kiln
