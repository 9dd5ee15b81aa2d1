// VmShape: the one rule for a VM's memory and virtual CPUs. They come in by
// four doors, a recipe's [output], `kiln boot --memory/--vcpus`, a Xen
// config's memory and vcpus, and an image's manifest.json, and each door
// checks them here and puts its own name for the value (file:line:col, or
// the flag) in front of the reason, so that a value is judged the same
// whichever way it came and the error blames where it was written.
#pragma once

#include <cstdint>
#include <string>

namespace kiln {

// Below this, a Debian kernel with systemd does not reach userspace.
constexpr uint64_t kMinVmMemoryMiB = 64;
// Above these, no host kiln runs on has the resources, and the numbers stay
// far from overflowing any unit they are written in.
constexpr uint64_t kMaxVmMemoryMiB = uint64_t{1} << 24;  // 16 TiB
constexpr int64_t kMaxVmVcpus = 255;                      // qemu's limit for a pc machine

// What is wrong with `bytes` as a VM's memory, or "" when it is fine. Doors
// that take bytes give the VM whole MiB, rounding down.
std::string vm_memory_problem(uint64_t bytes);
// The same for a number of MiB, as Xen configs and manifests write it.
std::string vm_memory_mib_problem(uint64_t mib);
// What is wrong with `count` as a VM's virtual CPUs, or "" when it is fine.
std::string vm_vcpus_problem(int64_t count);

}  // namespace kiln
