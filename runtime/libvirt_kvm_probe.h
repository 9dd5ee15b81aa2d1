// Whether KVM really runs a guest on a libvirt host. libvirt's capabilities
// offer KVM wherever /dev/kvm opens, and on some hosts that device is
// there while a guest under it never runs (qemu hangs or aborts: "failed to
// set MSR"). So, as for kiln's own qemu backend (runtime/kvm_probe), a
// 512-byte probe guest runs there, through libvirt, as a transient domain
// of type kvm shaped as kiln's domains are, and KVM is believed only if its
// word comes out on the console within a few seconds. The verdict is kept
// per host (its UUID) and hypervisor and libvirt version.
#pragma once

#include <filesystem>

#include "base/error.h"
#include "runtime/kvm_probe.h"
#include "runtime/libvirt_host.h"

namespace kiln {

// `cache_dir` holds the verdicts.
Result<KvmVerdict> probe_libvirt_kvm(LibvirtHost& host, const std::filesystem::path& cache_dir);

}  // namespace kiln
