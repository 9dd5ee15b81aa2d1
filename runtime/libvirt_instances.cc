#include "runtime/libvirt_instances.h"

#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <future>
#include <thread>

#include <pugixml.hpp>

#include "base/architecture.h"
#include "base/files.h"
#include "base/file_hash_cache.h"
#include "formats/domain/libvirt_xml.h"
#include "runtime/boot_source.h"
#include "runtime/console_relay.h"
#include "runtime/console_scanner.h"
#include "formats/image/guest_protocol.h"
#include "runtime/hypervisor_command.h"
#include "runtime/instance_store.h"
#include "runtime/libvirt_host.h"
#include "runtime/libvirt_kvm_probe.h"
#include "runtime/libvirt_stream.h"
#include "runtime/seed_disk.h"

namespace kiln {
namespace fs = std::filesystem;
namespace {

using Clock = std::chrono::steady_clock;

// What the libvirt backend does not take, refused by name before anything
// reaches the host.
Result<> refuse_what_libvirt_lacks(const BootRequest& request, const std::string& uri) {
  // libvirt forwards ports only through its passt backend, which Debian
  // 12's libvirt 9.0 refuses to parse (`<backend type='passt'/>`: "Invalid
  // value for attribute 'type'"); a libvirt network's own NAT or a host
  // bridge reaches the guest instead.
  if (!request.publish.empty() || request.ssh_port)
    return fail(ErrorKind::kBadInput, "{} with --connect {}: libvirt forwards no ports to user networking here "
                "(its passt backend is needed, which libvirt 9.0 does not take); put the guest on a libvirt network "
                "(--net NAME) or a bridge (--net tap:BRIDGE) and reach its address",
                request.ssh_port ? "--ssh-port" : "--publish", uri);
  if (!request.luks_passphrase_file.empty())
    return fail(ErrorKind::kBadInput, "--luks-passphrase-file with --connect {}: not through libvirt yet", uri);
  if (request.backend != "auto" && request.backend != "qemu")
    return fail(ErrorKind::kBadInput, "--backend {} with --connect {}: libvirt runs the guest under its qemu",
                request.backend, uri);
  return {};
}

// --net through libvirt names what the libvirt host has: its libvirt
// networks (`--net NAME`) and bridges (`--net tap:BRIDGE`), or user
// networking. kiln's own networks are this machine's, not looked for there.
struct LibvirtNetworking {
  // The request as kiln plans the guest: every NIC on user networking,
  // whose guest side (DHCP) is what a libvirt network's or bridge's is too.
  BootRequest planned;
  std::vector<std::string> networks;  // per NIC: the libvirt network, or ""
  std::vector<std::string> bridges;   // per NIC: the host bridge, or ""
};

// What the request asks of the host's networking; the networks it names
// are checked for there once it is reached.
LibvirtNetworking libvirt_networking(const BootRequest& request) {
  LibvirtNetworking out{request, {}, {}};
  for (std::string& text : out.planned.networks) {
    std::string network, bridge;
    if (text.starts_with("tap:")) bridge = text.substr(4);
    else if (text != "user" && text != "none") network = text;
    if (text != "none") {
      out.networks.push_back(network);
      out.bridges.push_back(bridge);
      text = "user";
    }
  }
  return out;
}

DomainAction action_of(LifecyclePolicy policy) {
  switch (policy) {
    case LifecyclePolicy::kRestart: return DomainAction::kRestart;
    case LifecyclePolicy::kPreserve: return DomainAction::kPreserve;
    case LifecyclePolicy::kDestroy: break;
  }
  return DomainAction::kDestroy;
}

// What goes with a domain kiln undefines: its NVRAM, and a managed save
// image (`virsh managedsave`), which would otherwise stay on the host.
constexpr unsigned kUndefineAll = VIR_DOMAIN_UNDEFINE_NVRAM | VIR_DOMAIN_UNDEFINE_MANAGED_SAVE;

// An instance's own volumes are NAME.*; images are image-HASH-FILE, shared.
std::string instance_prefix(const std::string& name) { return name + "."; }

// What was made on the host for a boot not finished: gone again, unless
// the boot gets to the end.
struct Undo {
  LibvirtHost& host;
  std::string name;
  virDomainPtr domain = nullptr;
  bool armed = true;
  ~Undo() {
    if (!armed) return;
    if (domain) {
      virDomainDestroy(domain);
      virDomainUndefineFlags(domain, kUndefineAll);
    }
    host.remove_volumes(instance_prefix(name));
  }
};

// The guest's console from the domain's start, until its ready report with
// `id` or the deadline; libvirt's stream is read on a thread of its own
// (a blocking read), which ends when the stream is aborted.
class ReadyWatch {
 public:
  static Result<std::unique_ptr<ReadyWatch>> open(virConnectPtr connection, virDomainPtr domain,
                                                  const std::string& name, std::string id) {
    KILN_ASSIGN(LibvirtStream stream, open_console_stream(connection, domain, name));
    return std::unique_ptr<ReadyWatch>(new ReadyWatch(std::move(stream), std::move(id)));
  }
  ~ReadyWatch() {
    virStreamAbort(stream_.get());
    if (reader_.joinable()) reader_.join();
  }
  bool wait(Clock::time_point deadline) { return ready_.wait_until(deadline) == std::future_status::ready; }
  // What the report said of the exec agent; once wait() said it came.
  const std::string& exec() const { return exec_; }

 private:
  ReadyWatch(LibvirtStream stream, std::string id) : stream_(std::move(stream)), id_(std::move(id)) {
    std::future<void> ready = signal_.get_future();
    ready_ = std::move(ready);
    reader_ = std::thread([this] { read(); });
  }
  void read() {
    ConsoleScanner scanner;
    char buffer[4096];
    bool said = false;
    int got;
    while ((got = virStreamRecv(stream_.get(), buffer, sizeof buffer)) > 0) {
      for (const ConsoleEvent& event : scanner.feed(std::string_view(buffer, got)))
        if (event.kind == ConsoleEvent::Kind::kReady && event.ready.id == id_ && !said) {
          said = true;
          exec_ = event.ready.exec;
          signal_.set_value();
        }
    }
  }

  LibvirtStream stream_;
  std::string id_;
  std::string exec_;
  std::promise<void> signal_;
  std::future<void> ready_;
  std::thread reader_;
};

// A save file's path on the libvirt host: a relative one is this
// machine's for a local URI (no host in it); the daemon has no way to know
// what it is relative to.
Result<std::string> path_on_host(const std::string& uri, const std::string& file) {
  if (fs::path(file).is_absolute()) return file;
  size_t scheme = uri.find("://");
  if (scheme != std::string::npos && uri.compare(scheme + 3, 1, "/") == 0) return fs::absolute(file).string();
  return fail(ErrorKind::kBadInput, "{}: a save file on {} needs an absolute path there", file, uri);
}

// The name of the domain saved in `path` on the host, if kiln made it.
Result<std::string> saved_domain_name(const LibvirtHost& host, const std::string& path) {
  char* text = virDomainSaveImageGetXMLDesc(host.connection(), path.c_str(), 0);
  if (!text) return std::unexpected(libvirt_error(fmt::format("{}: reading the save file {}", host.uri(), path)));
  pugi::xml_document xml;
  xml.load_string(text);
  free(text);
  pugi::xml_node domain = xml.child("domain");
  bool kilns = false;
  for (pugi::xml_node element : domain.child("metadata").children())
    for (pugi::xml_attribute attribute : element.attributes())
      kilns = kilns || (std::string_view(attribute.name()).starts_with("xmlns") &&
                        std::string_view(attribute.value()) == kKilnMetadataNamespace);
  if (!kilns)
    return fail(ErrorKind::kBadInput, "{} on {}: the domain saved in it ({}) is not a kiln instance", path,
                host.uri(), domain.child_value("name"));
  return std::string(domain.child_value("name"));
}

}  // namespace

std::string connect_uri(const std::string& flag) {
  if (!flag.empty()) return flag;
  const char* env = std::getenv("KILN_CONNECT");
  return env ? env : "";
}

Result<LibvirtBootOutcome> boot_through_libvirt(const std::string& uri, const BootRequest& request,
                                                std::chrono::seconds wait_ready, Reporter& reporter) {
  KILN_TRY(refuse_what_libvirt_lacks(request, uri));
  LibvirtNetworking networking = libvirt_networking(request);
  InstanceStore store = InstanceStore::open();
  BootSourceOptions options;
  options.boot_files_dir = store.state_root() / "boot-files";
  options.warn = [&reporter](const std::string& warning) { reporter.warn(warning); };
  KILN_ASSIGN(BootSource source, read_boot_source(request.source, options));
  KILN_ASSIGN(LibvirtHost host, LibvirtHost::open(uri));
  for (const std::string& network : networking.networks)
    if (!network.empty()) KILN_TRY(host.check_network(network));
  KILN_ASSIGN(const Architecture* arch, boot_architecture(request, source));
  bool native = arch->dpkg == host_architecture();
  KvmVerdict verdict{false, fmt::format("the guest is for {}, and KVM runs only this host's own architecture", arch->dpkg)};
  if (native) {
    KILN_ASSIGN(verdict, probe_libvirt_kvm(host, store.state_root()));
  }
  bool kvm = verdict.works;
  BackendChoice choice{BackendKind::kQemu, kvm,
                       kvm ? fmt::format("libvirt at {}: KVM ({})", uri, verdict.reason)
                           : fmt::format("libvirt at {}: plain QEMU (TCG); {}", uri, verdict.reason)};
  KILN_ASSIGN(InstanceSpec spec, plan_instance(networking.planned, source, choice, *real_host(store)));
  if (LibvirtDomain existing{virDomainLookupByName(host.connection(), spec.name.c_str())})
    return fail(ErrorKind::kBadInput, "{} has a domain named {} already", uri, spec.name);

  LibvirtBootOutcome outcome{spec, choice.why, {}, std::nullopt};
  Undo undo{host, spec.name};
  FileHashCache hashes = store.file_hashes();
  auto image_volume = [&](const fs::path& file) -> Result<std::string> {
    KILN_ASSIGN(std::string hash, hashes.sha256(file));
    std::string name = fmt::format("image-{}-{}", hash.substr(0, 32), file.filename().string());
    bool uploaded = false;
    reporter.note(fmt::format("{} on {}", name, uri));
    KILN_ASSIGN(std::string path, host.volume_from_file(name, file, uploaded));
    if (uploaded) outcome.uploaded.push_back(name);
    return path;
  };
  DomainSpec domain;
  domain.name = spec.name;
  domain.memory_mib = spec.memory_mib;
  domain.vcpus = spec.vcpus;
  if (!spec.firmware) {
    KILN_ASSIGN(domain.kernel, image_volume(spec.kernel));
    if (!spec.initrd.empty()) {
      KILN_ASSIGN(domain.ramdisk, image_volume(spec.initrd));
    }
    // The command line kiln's own qemu backend gives, root= first.
    std::string command_line = guest_command_line(spec);
    domain.root = spec.root;
    domain.extra = command_line.substr(command_line.find(' ') + 1);
  }
  for (size_t i = 0; i < spec.disks.size(); ++i) {
    const DiskSpec& disk = spec.disks[i];
    if (disk.qcow2)
      return fail(ErrorKind::kBadInput, "{}: {} is a qcow2 image; through libvirt kiln boots raw images (convert it "
                  "with `qemu-img convert -O raw`)", source.description, disk.base.string());
    KILN_ASSIGN(std::string base, image_volume(disk.base));
    DomainDisk attached{.frontend = fmt::format("xvd{}", static_cast<char>('a' + i))};
    if (disk.read_only) {
      attached.path = base;
      attached.read_only = true;
    } else {
      std::error_code ec;
      uint64_t capacity = fs::file_size(disk.base, ec);
      KILN_ASSIGN(attached.path, host.overlay_volume(fmt::format("{}disk{}.qcow2", instance_prefix(spec.name), i),
                                                     base, capacity));
      attached.format = DiskFormat::kQcow2;
    }
    domain.disks.push_back(attached);
  }
  // Written here, then sent: the host may be another machine.
  std::error_code ec;
  fs::create_directories(store.state_root(), ec);
  if (ec) return fail_errno("cannot create", store.state_root().string(), ec.value());
  fs::path seed = store.state_root() / fmt::format(".libvirt-seed-{}-{}.img", spec.name, ::getpid());
  KILN_TRY(write_seed_disk(seed, spec, "", store.state_root()));
  bool uploaded = false;
  auto seed_path = host.volume_from_file(instance_prefix(spec.name) + "seed.img", seed, uploaded);
  fs::remove(seed, ec);
  if (!seed_path) return std::unexpected(seed_path.error());
  domain.disks.push_back({.path = *seed_path, .frontend = fmt::format("xvd{}", static_cast<char>('a' + spec.disks.size())),
                          .read_only = true});
  for (size_t i = 0; i < spec.network.nics.size(); ++i)
    domain.vifs.push_back({.mac = spec.network.nics[i].mac,
                           .bridge = i < networking.bridges.size() ? networking.bridges[i] : ""});
  domain.on_poweroff = action_of(spec.on_poweroff);
  domain.on_reboot = action_of(spec.on_reboot);
  domain.on_crash = action_of(spec.on_crash);
  LibvirtOptions libvirt{.type = kvm ? LibvirtDomainType::kKvm : LibvirtDomainType::kQemu,
                         .arch = std::string(arch->uname),
                         .machine = std::string(arch->qemu_machine),
                         // The model alone: libvirt takes features as elements.
                         .tcg_cpu = native ? "" : std::string(arch->tcg_cpu.substr(0, arch->tcg_cpu.find(','))),
                         .instance = KilnInstanceMetadata{spec.id, spec.source},
                         .vif_networks = networking.networks,
                         .agent_channel = std::string(kAgentPortName)};
  if (spec.firmware) {
    // Through UEFI firmware (--firmware, an hvm Xen config): the disk's own
    // boot loader starts the kernel, and the agent finds its channel in an
    // OEM string, as under kiln's own qemu.
    libvirt.uefi = true;
    libvirt.oem_strings.push_back(fmt::format("{}virtio:{}", kAgentArgument, kAgentPortName));
  }
  KILN_ASSIGN(std::string xml, write_libvirt_xml(domain, libvirt));

  LibvirtDomain defined(virDomainDefineXML(host.connection(), xml.c_str()));
  if (!defined) return std::unexpected(libvirt_error(fmt::format("{}: defining {}", uri, spec.name)));
  undo.domain = defined.get();
  if (virDomainCreateWithFlags(defined.get(), VIR_DOMAIN_START_PAUSED) != 0)
    return std::unexpected(libvirt_error(fmt::format("{}: starting {}", uri, spec.name)));
  std::unique_ptr<ReadyWatch> watch;
  if (wait_ready.count() > 0) {
    KILN_ASSIGN(watch, ReadyWatch::open(host.connection(), defined.get(), spec.name, spec.id));
  }
  auto started = Clock::now();
  if (virDomainResume(defined.get()) != 0)
    return std::unexpected(libvirt_error(fmt::format("{}: starting {}", uri, spec.name)));
  undo.armed = false;  // started: it is the user's now, ready or not
  if (watch) {
    if (!watch->wait(started + wait_ready))
      return fail(ErrorKind::kFailed, "{} on {} did not report ready within {} s (`kiln destroy {} --connect {}` "
                  "removes it)", spec.name, uri, wait_ready.count(), spec.name, uri);
    outcome.ready_seconds = std::chrono::duration<double>(Clock::now() - started).count();
    std::string metadata =
        kiln_metadata_xml({spec.id, spec.source, outcome.ready_seconds, watch->exec()}, /*bare=*/true);
    if (virDomainSetMetadata(defined.get(), VIR_DOMAIN_METADATA_ELEMENT, metadata.c_str(), kKilnMetadataPrefix,
                             kKilnMetadataNamespace, VIR_DOMAIN_AFFECT_LIVE | VIR_DOMAIN_AFFECT_CONFIG) != 0)
      reporter.warn(libvirt_error(fmt::format("{}: noting {}'s ready time", uri, spec.name)).message);
  }
  return outcome;
}

Result<std::vector<LibvirtInstance>> list_libvirt_instances(const std::string& uri) {
  KILN_ASSIGN(LibvirtHost host, LibvirtHost::open(uri));
  std::vector<LibvirtInstance> out;
  for (const LibvirtDomain& domain : host.kiln_domains()) {
    LibvirtInstance instance;
    instance.name = virDomainGetName(domain.get());
    if (auto metadata = parse_kiln_metadata(kiln_metadata_of(domain.get()).value_or(""))) {
      instance.id = metadata->id;
      instance.source = metadata->source;
      instance.ready_seconds = metadata->ready_seconds;
    }
    virDomainInfo info{};
    if (virDomainGetInfo(domain.get(), &info) == 0) {
      instance.memory_mib = info.maxMem / 1024;
      instance.vcpus = info.nrVirtCpu;
    }
    std::tie(instance.state, instance.state_letter) = domain_state(domain.get());
    out.push_back(std::move(instance));
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  return out;
}

Result<> wait_libvirt_stopped(const std::string& uri, const std::string& name, std::chrono::seconds timeout) {
  KILN_ASSIGN(LibvirtHost host, LibvirtHost::open(uri));
  KILN_ASSIGN(LibvirtDomain domain, host.domain(name));
  auto deadline = Clock::now() + timeout;
  while (true) {
    int state = 0, reason = 0;
    if (virDomainGetState(domain.get(), &state, &reason, 0) != 0)
      return std::unexpected(libvirt_error(fmt::format("{}: the state of {}", uri, name)));
    if (state == VIR_DOMAIN_SHUTOFF || state == VIR_DOMAIN_CRASHED) return {};
    if (Clock::now() >= deadline)
      return fail(ErrorKind::kFailed, "{} on {} has not stopped after {} s", name, uri, timeout.count());
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
}

Result<> libvirt_instance_verb(const std::string& uri, const std::string& name, const std::string& verb) {
  KILN_ASSIGN(LibvirtHost host, LibvirtHost::open(uri));
  KILN_ASSIGN(LibvirtDomain domain, host.domain(name));
  virDomainPtr d = domain.get();
  int done = -1;
  if (verb == "shutdown") done = virDomainShutdown(d);
  else if (verb == "reboot") done = virDomainReboot(d, 0);
  else if (verb == "pause") done = virDomainSuspend(d);
  else if (verb == "unpause") done = virDomainResume(d);
  else if (verb == "destroy") {
    if (virDomainIsActive(d) == 1 && virDomainDestroy(d) != 0)
      return std::unexpected(libvirt_error(fmt::format("{}: destroy {}", uri, name)));
    done = virDomainUndefineFlags(d, kUndefineAll);
    if (done == 0) host.remove_volumes(instance_prefix(name));
  } else {
    return fail(ErrorKind::kBadInput, "kiln {} --connect: not through libvirt", verb);
  }
  if (done != 0) return std::unexpected(libvirt_error(fmt::format("{}: {} {}", uri, verb, name)));
  return {};
}

Result<> attach_libvirt_console(const std::string& uri, const std::string& name, bool interactive) {
  KILN_ASSIGN(LibvirtHost host, LibvirtHost::open(uri));
  KILN_ASSIGN(LibvirtDomain domain, host.domain(name));
  if (virDomainIsActive(domain.get()) != 1)
    return fail(ErrorKind::kBadInput, "{} on {} is not running (state: {}); there is no console to attach to", name,
                uri, domain_state(domain.get()).first);
  KILN_ASSIGN(auto console, open_console_socket(host.connection(), domain.get(), name));
  relay_console(console->fd(), name, interactive);
  return {};
}

Result<> save_libvirt_instance(const std::string& uri, const std::string& name, const std::string& file) {
  KILN_ASSIGN(std::string path, path_on_host(uri, file));
  KILN_ASSIGN(LibvirtHost host, LibvirtHost::open(uri));
  KILN_ASSIGN(LibvirtDomain domain, host.domain(name));
  if (virDomainIsActive(domain.get()) != 1)
    return fail(ErrorKind::kBadInput, "{} on {} is not running (state: {}); there is nothing to save", name, uri,
                domain_state(domain.get()).first);
  if (virDomainSaveFlags(domain.get(), path.c_str(), nullptr, 0) != 0)
    return std::unexpected(libvirt_error(fmt::format("{}: saving {} to {}", uri, name, path)));
  return {};
}

Result<std::string> restore_libvirt_instance(const std::string& uri, const std::string& file) {
  KILN_ASSIGN(std::string path, path_on_host(uri, file));
  KILN_ASSIGN(LibvirtHost host, LibvirtHost::open(uri));
  KILN_ASSIGN(std::string name, saved_domain_name(host, path));
  auto domain = host.domain(name);
  if (!domain)
    return fail(ErrorKind::kBadInput, "{} on {}: {} was saved in it, and is gone since (destroyed, with its disks); "
                "it cannot be restored", path, uri, name);
  if (virDomainIsActive(domain->get()) == 1)
    return fail(ErrorKind::kBadInput, "{} on {}: {} is running; `kiln save` it or `kiln destroy` it first", path,
                uri, name);
  if (virDomainRestoreFlags(host.connection(), path.c_str(), nullptr, 0) != 0)
    return std::unexpected(libvirt_error(fmt::format("{}: restoring {} from {}", uri, name, path)));
  return name;
}

}  // namespace kiln
