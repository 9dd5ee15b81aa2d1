// kiln boot IMAGE-OR-CONFIG: starts an instance of a baked image, or of a
// Xen domain config, on qemu or User-Mode Linux.
#include <signal.h>
#include <unistd.h>

#include <thread>

#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "base/interrupt.h"
#include "cli/boot_flags.h"
#include "cli/command.h"
#include "runtime/instance_manager.h"
#include "runtime/libvirt_instances.h"

namespace kiln::cli {
namespace {

void print_outcome(const BootOutcome& outcome, const BootFlags& flags) {
  const InstanceRecord& r = outcome.record;
  if (flags.json) {
    nlohmann::json out = {{"name", r.spec.name},
                          {"id", r.spec.id},
                          {"backend", backend_name(r.spec.backend)},
                          {"kvm", r.spec.kvm},
                          {"backend_reason", outcome.backend_choice},
                          {"create_ms", outcome.create_ms},
                          {"hostname", r.spec.personality.hostname},
                          {"machine_id", r.spec.personality.machine_id},
                          {"mac", r.spec.network.first_mac()},
                        {"network", network_json(r.spec.network)}};
    for (const SshHostKey& key : r.confirmed_ssh_host_keys()) out["ssh_host_keys"].push_back(public_json(key));
    if (r.ready_seconds) out["ready_seconds"] = *r.ready_seconds;
    fmt::print("{}\n", out.dump());
    return;
  }
  fmt::print("{} started (id {}, {}{}), instance made in {:.1f} ms\n", r.spec.name, r.spec.id,
             backend_name(r.spec.backend), r.spec.backend == BackendKind::kQemu ? (r.spec.kvm ? "+kvm" : "+tcg") : "",
             outcome.create_ms);
  if (r.ready_seconds) fmt::print("{} ready in {:.1f} s\n", r.spec.name, *r.ready_seconds);
  for (const SshHostKey& key : r.confirmed_ssh_host_keys())
    fmt::print("  ssh host key {} {}\n", key.public_key.substr(0, key.public_key.find(' ')), key.fingerprint);
}

// Foreground: show the console until the instance stops. The first Ctrl-C
// asks the guest to shut down, a second one destroys it.
int follow(const InstanceStore& store, const std::string& name) {
  std::thread viewer([&] { (void)attach_console(store, name, /*interactive=*/false); });
  viewer.detach();
  bool asked = false;
  while (InstanceLock::is_held(store.paths(name))) {
    if (interrupted()) {
      if (!asked) {
        fmt::print(stderr, "\nkiln: shutting {} down (Ctrl-C again to destroy it)\n", name);
        (void)request(store, name, "shutdown");
        asked = true;
        clear_interrupt();
      } else {
        (void)destroy_instance(store, name);
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return 0;
}

// Through libvirt: it returns once the guest started (or was ready).
int run_libvirt_boot(const BootFlags& flags, const std::string& uri, Reporter& reporter) {
  if (flags.console)
    return report_error(Error{ErrorKind::kBadInput, "--console with --connect: not through libvirt yet", {}, {}});
  auto outcome = boot_through_libvirt(uri, flags.request, std::chrono::seconds(flags.wait_ready), reporter);
  if (!outcome) return report_error(outcome.error());
  const InstanceSpec& spec = outcome->spec;
  fmt::print(stderr, "kiln: {}: {}\n", spec.name, outcome->why);
  if (flags.json) {
    nlohmann::json out = {{"name", spec.name},       {"id", spec.id},
                          {"connect", uri},          {"kvm", spec.kvm},
                          {"backend_reason", outcome->why}, {"uploaded", outcome->uploaded},
                          {"hostname", spec.personality.hostname}, {"mac", spec.network.first_mac()}};
    if (outcome->ready_seconds) out["ready_seconds"] = *outcome->ready_seconds;
    fmt::print("{}\n", out.dump());
    return 0;
  }
  fmt::print("{} started on {} (id {}, libvirt {}){}\n", spec.name, uri, spec.id, spec.kvm ? "kvm" : "qemu",
             outcome->uploaded.empty() ? ", no image uploaded"
                                       : fmt::format(", uploaded {}", fmt::join(outcome->uploaded, ", ")));
  if (outcome->ready_seconds) fmt::print("{} ready in {:.1f} s\n", spec.name, *outcome->ready_seconds);
  return 0;
}

int run_boot(BootFlags& flags) {
  if (auto ok = apply_flags(flags); !ok) return report_error(ok.error());
  Reporter reporter(Reporter::detect(flags.json));
  if (std::string uri = connect_uri(flags.connect); !uri.empty()) {
    if (flags.from_snapshot)
      return report_error(Error{ErrorKind::kBadInput, "--from-snapshot: kiln's own runtime resumes snapshots, "
                                "not libvirt (--connect " + uri + ")", {}, {}});
    return run_libvirt_boot(flags, uri, reporter);
  }
  InstanceStore store = InstanceStore::open();
  auto outcome = start_instance(store, flags, reporter);
  if (!outcome) return report_error(outcome.error());
  const std::string& name = outcome->record.spec.name;
  // Say once which backend runs the guest, and why (a TCG fallback included).
  fmt::print(stderr, "kiln: {}: {}\n", name, outcome->backend_choice);
  bool foreground = !flags.detach && !flags.console;
  if (flags.wait_ready > 0) {
    auto ready = wait_ready(store, name, std::chrono::seconds(flags.wait_ready));
    // In the foreground, Ctrl-C while waiting means what it means later on:
    // follow() sees it and shuts the guest down.
    bool interrupted_here = !ready && ready.error().kind == ErrorKind::kInterrupted;
    if (!ready && !(foreground && interrupted_here)) return report_error(ready.error());
    if (ready) outcome->record = *ready;
  }
  print_outcome(*outcome, flags);
  if (flags.detach) return 0;
  if (flags.console) return finish(attach_console(store, name, /*interactive=*/true), [] {});
  return follow(store, name);
}

}  // namespace

void register_boot(CLI::App& root, Registry& registry) {
  auto flags = std::make_shared<BootFlags>();
  CLI::App* app = root.add_subcommand("boot", "Start an instance of a baked image or a Xen domain config");
  add_instance_options(app, *flags);
  app->add_option("--on-poweroff", flags->on_poweroff, "destroy (default), restart or preserve");
  app->add_option("--on-reboot", flags->on_reboot, "restart (default), destroy or preserve");
  app->add_option("--on-crash", flags->on_crash, "destroy (default), restart or preserve");
  app->add_flag("--detach,-d", flags->detach, "Return once started (or ready, with --wait-ready)");
  app->add_flag("--console,-c", flags->console, "Attach the interactive console (Ctrl-] detaches)");
  app->add_flag("--wait-ready{120}", flags->wait_ready,
                "Wait until the guest reports ready (default up to 120 s; --wait-ready=SECONDS)");
  app->add_flag("--json", flags->json, "Print the result as JSON");
  app->add_option("--connect", flags->connect,
                  "Boot through libvirt at this URI (qemu:///system, qemu+ssh://root@host/system); default "
                  "$KILN_CONNECT, else kiln's own runtime. The image goes to the host's storage pool 'kiln' once");
  app->footer(
      "Without --detach or --console, boot shows the guest console until the instance stops;\n"
      "Ctrl-C shuts the guest down, a second Ctrl-C destroys it.\n"
      "A Xen domain config (xl or xm) boots as written: `kiln help xen` says what kiln does with each\n"
      "key, docs/xen-config.md likewise; bootloader = 'pygrub' and type = 'hvm' work.");
  registry.push_back({app, [flags] { return run_boot(*flags); }});
}

}  // namespace kiln::cli
