#include "cli/boot_flags.h"

#include "base/size.h"
#include "base/vm_shape.h"
#include "builder/stage_cache.h"

namespace kiln::cli {

void add_shape_options(CLI::App* app, BootFlags& flags) {
  app->add_option("--memory", flags.memory, "Memory, 64M to 16T, e.g. 512M (default: the image's or the config's, else 512M)");
  app->add_option("--vcpus", flags.request.vcpus, "Virtual CPUs, 1 to 255 (default: the image's or the config's, else 1)");
}

void add_instance_options(CLI::App* app, BootFlags& flags) {
  BootRequest& r = flags.request;
  app->add_option("source", r.source, "Image directory from `kiln bake`, or a Xen domain config file")->required();
  app->add_option("--name", r.name, "Instance name (default: the image's or the config's name)");
  app->add_option("--backend", r.backend, "auto (the fastest that works here), qemu or uml")
      ->check(CLI::IsMember({"auto", "qemu", "uml"}));
  add_shape_options(app, flags);
  app->add_option("--net", r.networks,
                  "A NIC on user networking (the default), a kiln network NAME (kiln network create), or "
                  "tap:BRIDGE (a host bridge); repeatable, in order eth0, eth1...; none: no network")
      ->allow_extra_args(false);
  app->add_option("--publish,-p", r.publish,
                  "[HOSTIP:]HOSTPORT:GUESTPORT[/tcp|/udp]: a host port (on 127.0.0.1 unless HOSTIP says) that "
                  "reaches the guest's port through its first NIC (user networking or a kiln network); repeatable")
      ->allow_extra_args(false);
  app->add_option("--ssh-port", r.ssh_port, "Forward 127.0.0.1:PORT to the guest's ssh (user networking)");
  app->add_option("--hostname", r.hostname, "Guest hostname (default: the instance name; a Xen config's domain keeps its own)");
  app->add_option("--ssh-key", flags.ssh_keys, "Public key file for root's authorized_keys (repeatable)")
      ->allow_extra_args(false);
  app->add_option("--file", r.files, "SRC:/DEST file copied into the guest at boot (repeatable)")
      ->allow_extra_args(false);
  app->add_option("--firstboot", flags.firstboot, "Script run once in the guest before it reports ready");
  app->add_flag("--persistent", r.persistent, "Keep the instance's disk overlays after destroy, and reuse them");
  app->add_flag("--firmware", r.firmware, "qemu: boot disk.raw through UEFI firmware (OVMF) instead of the kernel");
  app->add_option("--luks-passphrase-file", r.luks_passphrase_file,
                  "Answer an encrypted root's passphrase prompt with this file's first line (kept in memory only)");
  app->add_flag("--from-snapshot", flags.from_snapshot,
                "Resume a snapshot of the image (made on first use, kept beside the cache) instead of booting: qemu, "
                "up to 4 NICs; where no snapshot can serve, boot and say why (docs/snapshots.md)");
}

Result<BootOutcome> start_instance(const InstanceStore& store, BootFlags& flags, Reporter& reporter) {
  if (!flags.from_snapshot) return boot_instance(store, flags.request, reporter);
  flags.request.snapshots = snapshot_root();
  return resume_instance(store, flags.request, reporter);
}

std::filesystem::path snapshot_root() { return StageCache::default_root() / "snapshots"; }

Result<> apply_flags(BootFlags& flags) {
  if (!flags.memory.empty()) {
    auto bytes = parse_size(flags.memory);
    if (!bytes) return fail(ErrorKind::kBadInput, "--memory {}: {}", flags.memory, bytes.error().message);
    if (std::string problem = vm_memory_problem(*bytes); !problem.empty())
      return fail(ErrorKind::kBadInput, "--memory {}: {}", flags.memory, problem);
    flags.request.memory_mib = *bytes / kMiB;
  }
  if (flags.request.vcpus) {
    if (std::string problem = vm_vcpus_problem(*flags.request.vcpus); !problem.empty())
      return fail(ErrorKind::kBadInput, "--vcpus {}: {}", *flags.request.vcpus, problem);
  }
  for (const std::string& key : flags.ssh_keys) flags.request.ssh_key_files.emplace_back(key);
  if (!flags.firstboot.empty()) flags.request.firstboot = flags.firstboot;
  auto policy = [](const std::string& text, std::optional<LifecyclePolicy>& out) -> Result<> {
    if (text.empty()) return {};
    KILN_ASSIGN(out, parse_policy(text));
    return {};
  };
  KILN_TRY(policy(flags.on_poweroff, flags.request.on_poweroff));
  KILN_TRY(policy(flags.on_reboot, flags.request.on_reboot));
  KILN_TRY(policy(flags.on_crash, flags.request.on_crash));
  if (flags.detach && flags.console) return fail(ErrorKind::kBadInput, "--detach and --console do not go together");
  return {};
}

}  // namespace kiln::cli
