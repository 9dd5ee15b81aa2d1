// KvmProbe: whether QEMU with KVM really runs a guest on this host. The
// device node is not enough: on some hosts /dev/kvm exists and QEMU aborts
// ("failed to set MSR") or hangs. So the probe boots a 512-byte guest that
// writes a word to the serial port, and believes KVM only if the word comes
// out within a few seconds. The verdict is kept per QEMU and host kernel
// version, so only the first boot pays for it.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>

#include "base/error.h"

namespace kiln {

struct KvmVerdict {
  bool works = false;
  std::string reason;  // why not, or "probe guest ran under KVM"
  double seconds = 0;  // how long the probe took (0 when cached)
  bool cached = false;
};

// The probe guest: a boot sector that prints kKvmProbeWord on COM1 and halts.
inline constexpr std::string_view kKvmProbeWord = "KVM-OK";
std::string kvm_probe_boot_sector();

// `cache_dir` holds the verdict; `qemu` is the qemu-system binary.
KvmVerdict probe_kvm(const std::filesystem::path& cache_dir, const std::string& qemu);

// One uncached run of the probe guest under `accel` ("kvm" or "tcg"); `dir`
// is scratch space.
KvmVerdict probe_accelerator(const std::filesystem::path& dir, const std::string& qemu, std::string_view accel);

}  // namespace kiln
