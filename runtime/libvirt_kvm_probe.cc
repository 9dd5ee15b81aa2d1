#include "runtime/libvirt_kvm_probe.h"

#include <poll.h>
#include <unistd.h>

#include <chrono>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "base/files.h"
#include "runtime/libvirt_stream.h"

namespace kiln {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr const char* kProbeVolume = "kiln-kvm-probe.img";

// What the verdict depends on: the host, and what runs guests there.
std::string fingerprint(const LibvirtHost& host, const std::string& host_uuid) {
  unsigned long hypervisor = 0, library = 0;
  virConnectGetVersion(host.connection(), &hypervisor);
  virConnectGetLibVersion(host.connection(), &library);
  return fmt::format("{} qemu {} libvirt {}", host_uuid, hypervisor, library);
}

// The word on the console within `limit`, or not.
bool console_says(int fd, std::string_view word, std::chrono::milliseconds limit) {
  std::string seen;
  auto deadline = Clock::now() + limit;
  while (seen.find(word) == std::string::npos) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    pollfd ready{fd, POLLIN, 0};
    if (left <= 0 || ::poll(&ready, 1, static_cast<int>(left)) <= 0) return false;
    char buffer[256];
    ssize_t got = ::read(fd, buffer, sizeof buffer);
    if (got <= 0) return false;
    seen.append(buffer, got);
  }
  return true;
}

Result<KvmVerdict> run_probe(LibvirtHost& host) {
  std::string sector = kvm_probe_boot_sector();
  KILN_ASSIGN(std::string disk, host.volume_from_bytes(kProbeVolume, sector));
  std::string name = fmt::format("kiln-kvm-probe-{}", ::getpid());
  // The CPU kiln's domains get under KVM (formats/domain/libvirt_xml):
  // what must run.
  std::string xml = fmt::format(
      "<domain type='kvm'><name>{}</name><memory unit='MiB'>16</memory><vcpu>1</vcpu>"
      "<os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os><cpu mode='host-model'/><devices>"
      "<disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='{}'/>"
      "<target dev='hda' bus='ide'/></disk><serial type='pty'/><console type='pty'/></devices>"
      "</domain>", name, disk);
  auto started = Clock::now();
  // Transient, and gone with this connection whatever happens to kiln.
  LibvirtDomain domain(virDomainCreateXML(host.connection(), xml.c_str(),
                                          VIR_DOMAIN_START_PAUSED | VIR_DOMAIN_START_AUTODESTROY));
  if (!domain) {
    Error error = libvirt_error("starting the probe guest under KVM");
    return KvmVerdict{false, error.message, 0};
  }
  bool ran = false;
  {
    auto console = open_console_socket(host.connection(), domain.get(), name);
    if (!console) {
      virDomainDestroy(domain.get());
      return std::unexpected(console.error());
    }
    ran = virDomainResume(domain.get()) == 0 &&
          console_says((*console)->fd(), kKvmProbeWord, std::chrono::milliseconds(4000));
  }
  virDomainDestroy(domain.get());
  double seconds = std::chrono::duration<double>(Clock::now() - started).count();
  if (ran) return KvmVerdict{true, "a probe guest ran under KVM there", seconds};
  return KvmVerdict{false, "libvirt offers KVM, but a probe guest under it did not run within 4 s", seconds};
}

}  // namespace

Result<KvmVerdict> probe_libvirt_kvm(LibvirtHost& host, const fs::path& cache_dir) {
  KILN_ASSIGN(LibvirtCapabilities capabilities, host.capabilities());
  if (!capabilities.kvm) return KvmVerdict{false, "its host offers no KVM"};
  std::error_code ec;
  fs::create_directories(cache_dir, ec);
  fs::path cache = cache_dir / "libvirt-kvm-probe.json";
  std::string key = fingerprint(host, capabilities.host_uuid);
  nlohmann::json verdicts = nlohmann::json::object();
  if (auto text = read_file(cache)) {
    verdicts = nlohmann::json::parse(*text, nullptr, false);
    if (!verdicts.is_object()) verdicts = nlohmann::json::object();
  }
  if (verdicts.contains(key) && verdicts[key].is_object())
    return KvmVerdict{verdicts[key].value("works", false), verdicts[key].value("reason", ""), 0, true};
  KILN_ASSIGN(KvmVerdict verdict, run_probe(host));
  verdicts[key] = {{"works", verdict.works}, {"reason", verdict.reason}};
  (void)write_file_atomic(cache, verdicts.dump(2) + "\n");
  return verdict;
}

}  // namespace kiln
