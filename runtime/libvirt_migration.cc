#include "runtime/libvirt_migration.h"

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <thread>

#include <fmt/format.h>
#include <pugixml.hpp>

#include "base/size.h"
#include "runtime/instance_store.h"
#include "runtime/libvirt_host.h"
#include "runtime/libvirt_kvm_probe.h"

namespace kiln {
namespace {

using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

// What the domain boots from and writes to, as its XML names them.
struct DomainFiles {
  std::string type;                 // kvm or qemu
  std::vector<std::string> paths;   // kernel, initrd and each disk's file
  std::vector<std::string> targets; // the disks' target devices, by path
};

Result<DomainFiles> files_of(const std::string& xml_text, const std::string& name) {
  pugi::xml_document xml;
  if (!xml.load_string(xml_text.c_str())) return fail(ErrorKind::kFailed, "{}: libvirt's XML does not parse", name);
  pugi::xml_node domain = xml.child("domain");
  DomainFiles files{domain.attribute("type").value(), {}, {}};
  for (const char* element : {"kernel", "initrd"})
    if (std::string path = domain.child("os").child_value(element); !path.empty()) {
      files.paths.push_back(path);
      files.targets.push_back("");
    }
  for (pugi::xml_node disk : domain.child("devices").children("disk")) {
    std::string path = disk.child("source").attribute("file").value();
    if (path.empty()) continue;
    files.paths.push_back(path);
    files.targets.push_back(disk.child("target").attribute("dev").value());
  }
  return files;
}

std::string replaced_everywhere(std::string text, const std::string& from, const std::string& to) {
  if (from == to) return text;
  for (size_t at = text.find(from); at != std::string::npos; at = text.find(from, at + to.size()))
    text.replace(at, from.size(), to);
  return text;
}

// The instance's own volumes made on the target, gone again unless the
// move ends with the guest running there.
struct TargetUndo {
  LibvirtHost& target;
  std::string prefix;
  bool armed = true;
  ~TargetUndo() {
    if (armed) target.remove_volumes(prefix);
  }
};

// libvirt's figures of the migration that ended, from the domain that
// arrived (the target keeps them).
void read_completed_stats(virDomainPtr moved, MigrationOutcome& outcome) {
  int type = 0, count = 0;
  virTypedParameterPtr params = nullptr;
  if (virDomainGetJobStats(moved, &type, &params, &count, VIR_DOMAIN_JOB_STATS_COMPLETED) != 0) return;
  unsigned long long value = 0;
  if (virTypedParamsGetULLong(params, count, VIR_DOMAIN_JOB_DOWNTIME, &value) == 1) outcome.qemu_downtime_ms = value;
  if (virTypedParamsGetULLong(params, count, VIR_DOMAIN_JOB_TIME_ELAPSED, &value) == 1) outcome.stream_ms = value;
  if (virTypedParamsGetULLong(params, count, VIR_DOMAIN_JOB_MEMORY_PROCESSED, &value) == 1) outcome.ram_bytes = value;
  if (virTypedParamsGetULLong(params, count, VIR_DOMAIN_JOB_DISK_PROCESSED, &value) == 1) outcome.disk_bytes = value;
  virTypedParamsFree(params, count);
}

// The source's progress while libvirt migrates (the call blocks): memory
// and disk processed against their totals, every half second.
class JobProgress {
 public:
  JobProgress(const std::string& uri, const std::string& name, Reporter& reporter)
      : thread_([this, uri, name, &reporter] { watch(uri, name, reporter); }) {}
  ~JobProgress() {
    done_ = true;
    thread_.join();
  }

 private:
  // A connection of its own: libvirt's calls on one connection wait for
  // each other, and the migration call holds the first for its length.
  void watch(const std::string& uri, const std::string& name, Reporter& reporter) {
    virConnectPtr connection = virConnectOpenAuth(uri.c_str(), virConnectAuthPtrDefault, 0);
    if (!connection) return;
    if (virDomainPtr domain = virDomainLookupByName(connection, name.c_str())) {
      while (!done_) {
        virDomainJobInfo info{};
        if (virDomainGetJobInfo(domain, &info) == 0 && info.type == VIR_DOMAIN_JOB_UNBOUNDED && info.dataTotal > 0)
          reporter.progress(info.dataProcessed, info.dataTotal);
        for (int i = 0; i < 5 && !done_; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
      virDomainFree(domain);
    }
    virConnectClose(connection);
  }

  std::atomic<bool> done_ = false;
  std::thread thread_;
};

struct TypedParams {
  virTypedParameterPtr params = nullptr;
  int count = 0, room = 0;
  ~TypedParams() { virTypedParamsFree(params, count); }
  bool add(const char* key, const std::string& value) {
    return virTypedParamsAddString(&params, &count, &room, key, value.c_str()) == 0;
  }
};

}  // namespace

std::string libvirt_uri_host(const std::string& uri) {
  size_t scheme = uri.find("://");
  if (scheme == std::string::npos) return "";
  std::string authority = uri.substr(scheme + 3);
  authority = authority.substr(0, authority.find_first_of("/?"));
  if (size_t at = authority.rfind('@'); at != std::string::npos) authority = authority.substr(at + 1);
  if (authority.starts_with('[')) return authority.substr(1, authority.find(']') - 1);
  return authority.substr(0, authority.find(':'));
}

Result<MigrationOutcome> migrate_libvirt_instance(const std::string& from, const std::string& name,
                                                  const std::string& to, bool live, Reporter& reporter) {
  auto started = Clock::now();
  MigrationOutcome outcome;
  outcome.target = to;
  outcome.by_libvirt = true;
  reporter.step("connect", fmt::format("{} and {}", from, to));
  KILN_ASSIGN(LibvirtHost source, LibvirtHost::open(from));
  KILN_ASSIGN(LibvirtDomain domain, source.domain(name));
  if (virDomainIsActive(domain.get()) != 1)
    return fail(ErrorKind::kBadInput, "{} on {} is not running; kiln migrate moves a running instance", name, from);
  KILN_ASSIGN(LibvirtHost target, LibvirtHost::open(to));
  reporter.done();
  if (LibvirtDomain there{virDomainLookupByName(target.connection(), name.c_str())})
    return fail(ErrorKind::kBadInput, "{} has a domain named {} already", to, name);

  char* text = virDomainGetXMLDesc(domain.get(), VIR_DOMAIN_XML_MIGRATABLE);
  if (!text) return std::unexpected(libvirt_error(fmt::format("{}: the domain of {}", from, name)));
  std::string xml = text;
  free(text);
  KILN_ASSIGN(DomainFiles files, files_of(xml, name));
  if (files.type == "kvm") {
    KILN_ASSIGN(KvmVerdict kvm, probe_libvirt_kvm(target, InstanceStore::open().state_root()));
    if (!kvm.works) return fail(ErrorKind::kBadInput, "{} runs under KVM, and on {}: {}", name, to, kvm.reason);
  }

  // No domain of that name there: volumes of that name are what an
  // earlier move, cut short, left.
  target.remove_volumes(name + ".");
  TargetUndo undo{target, name + "."};
  TypedParams params;
  auto copy_volume = [&](const LibvirtVolumeFacts& volume) -> Result<std::string> {
    bool uploaded = false;
    uint64_t before = outcome.image_bytes_sent;
    reporter.step("volume", fmt::format("{} to {}", volume.name, to));
    KILN_ASSIGN(std::string path, target.volume_from_host(volume, source, outcome.image_bytes_sent, uploaded));
    reporter.done(uploaded ? fmt::format("sent {}", format_size(outcome.image_bytes_sent - before))
                           : std::string("there already"));
    if (uploaded && volume.name.starts_with("image-")) outcome.sent_files.push_back(volume.name);
    return path;
  };
  for (size_t i = 0; i < files.paths.size(); ++i) {
    KILN_ASSIGN(LibvirtVolumeFacts facts, source.volume_at(files.paths[i]));
    std::string path;
    if (facts.backing_path.empty()) {
      KILN_ASSIGN(path, copy_volume(facts));
    } else {
      // The instance's overlay: the target makes its own, empty, over its
      // copy of the image; libvirt copies what the guest wrote into it.
      KILN_ASSIGN(LibvirtVolumeFacts base, source.volume_at(facts.backing_path));
      KILN_ASSIGN(std::string base_path, copy_volume(base));
      KILN_ASSIGN(path, target.overlay_volume(facts.name, base_path, facts.capacity));
      xml = replaced_everywhere(xml, facts.backing_path, base_path);
      if (!params.add(VIR_MIGRATE_PARAM_MIGRATE_DISKS, files.targets[i]))
        return std::unexpected(libvirt_error("migration parameters"));
    }
    xml = replaced_everywhere(xml, files.paths[i], path);
  }

  if (!params.add(VIR_MIGRATE_PARAM_DEST_XML, xml)) return std::unexpected(libvirt_error("migration parameters"));
  // qemu's stream goes to the host as this URI names it, not as the
  // target's own host name resolves here (which may be nowhere).
  if (std::string host = libvirt_uri_host(to); !host.empty())
    if (!params.add(VIR_MIGRATE_PARAM_URI, fmt::format("tcp://{}", host.find(':') == std::string::npos
                                                                          ? host : "[" + host + "]")))
      return std::unexpected(libvirt_error("migration parameters"));
  unsigned flags = VIR_MIGRATE_PERSIST_DEST | VIR_MIGRATE_UNDEFINE_SOURCE | VIR_MIGRATE_NON_SHARED_INC |
                   (live ? VIR_MIGRATE_LIVE : 0);
  reporter.step("migrate", fmt::format("{} to {}{}", name, to, live ? ", live" : ""));
  LibvirtDomain moved;
  {
    JobProgress progress(from, name, reporter);
    moved.reset(virDomainMigrate3(domain.get(), target.connection(), params.params, params.count, flags));
  }
  if (!moved)
    return std::unexpected(libvirt_error(fmt::format("migrating {} from {} to {} (it runs on at {})", name, from, to,
                                                     from)));
  undo.armed = false;
  read_completed_stats(moved.get(), outcome);
  source.remove_volumes(name + ".");
  outcome.total_ms = ms_since(started);
  reporter.done(fmt::format("downtime {:.0f} ms", outcome.downtime_ms()));
  return outcome;
}

}  // namespace kiln
