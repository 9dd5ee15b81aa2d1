// kiln list | console | shutdown | reboot | destroy | pause | unpause |
// save | restore: xm's lifecycle commands for kiln instances.
#include <ctime>

#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "runtime/instance_manager.h"

namespace kiln::cli {
namespace {

std::string uptime(const InstanceRecord& record) {
  if (record.started_at_ms == 0 || record.hypervisor_pid == 0) return "-";
  int64_t seconds = static_cast<int64_t>(std::time(nullptr)) - record.started_at_ms / 1000;
  if (seconds < 120) return fmt::format("{}s", seconds);
  if (seconds < 7200) return fmt::format("{}m", seconds / 60);
  return fmt::format("{}h{:02}m", seconds / 3600, seconds / 60 % 60);
}

nlohmann::json record_json(const InstanceRecord& r) {
  nlohmann::json out = {{"name", r.spec.name},
                        {"id", r.spec.id},
                        {"state", state_name(r.state)},
                        {"state_letter", std::string(1, state_letter(r.state))},
                        {"memory_mib", r.spec.memory_mib},
                        {"vcpus", r.spec.vcpus},
                        {"backend", backend_name(r.spec.backend)},
                        {"kvm", r.spec.kvm},
                        {"started_at_ms", r.started_at_ms},
                        {"hypervisor_pid", r.hypervisor_pid},
                        {"restarts", r.restarts},
                        {"hostname", r.spec.personality.hostname},
                        {"mac", r.spec.personality.mac},
                        {"machine_id", r.spec.personality.machine_id},
                        {"source", r.spec.source},
                        {"last_event", r.last_event},
                        {"saved_to", r.saved_to},
                        {"waiting_for", r.waiting_for},
                        {"guest", guest_json(r)}};
  if (r.ready_seconds) out["ready_seconds"] = *r.ready_seconds;
  for (const SshHostKey& key : r.confirmed_ssh_host_keys()) out["ssh_host_keys"].push_back(public_json(key));
  return out;
}

int run_list(bool json) {
  InstanceStore store = InstanceStore::open();
  std::vector<InstanceRecord> records = list_instances(store);
  if (json) {
    nlohmann::json out = nlohmann::json::array();
    for (const auto& record : records) out.push_back(record_json(record));
    fmt::print("{}\n", out.dump(2));
    return 0;
  }
  fmt::print("{:<20} {:<16} {:>6} {:>5} {:<5} {:>8} {:<8} {}\n", "Name", "ID", "Mem", "VCPUs", "State", "Time",
             "Backend", "Ready");
  for (const auto& r : records) {
    std::string backend = std::string(backend_name(r.spec.backend));
    if (r.spec.backend == BackendKind::kQemu) backend += r.spec.kvm ? "+kvm" : "+tcg";
    std::string ready = r.ready_seconds ? fmt::format("{:.1f}s", *r.ready_seconds) : "-";
    if (r.state == InstanceState::kCrashed || r.state == InstanceState::kStopped || r.state == InstanceState::kSaved)
      ready = r.last_event;
    else if (!r.ready_seconds && !r.waiting_for.empty()) ready = "waiting for " + r.waiting_for;
    fmt::print("{:<20} {:<16} {:>6} {:>5} {:<5} {:>8} {:<8} {}\n", r.spec.name, r.spec.id, r.spec.memory_mib,
               r.spec.vcpus, std::string(1, state_letter(r.state)), uptime(r), backend, ready);
  }
  return 0;
}

// A request to the instance's supervisor; `--wait` waits for it to stop.
void register_request(CLI::App& root, Registry& registry, const std::string& verb, const std::string& help,
                      bool can_wait) {
  auto name = std::make_shared<std::string>();
  auto wait = std::make_shared<int>(0);
  CLI::App* app = root.add_subcommand(verb, help);
  app->add_option("name", *name, "Instance name")->required();
  if (can_wait) app->add_flag("--wait{60}", *wait, "Wait until it has stopped (up to 60 s; --wait=SECONDS)");
  registry.push_back({app, [name, wait, verb] {
                        InstanceStore store = InstanceStore::open();
                        auto done = request(store, *name, verb);
                        if (done && *wait > 0) done = wait_gone(store, *name, std::chrono::seconds(*wait));
                        return finish(done, [] {});
                      }});
}

}  // namespace

void register_instance_commands(CLI::App& root, Registry& registry) {
  auto json = std::make_shared<bool>(false);
  CLI::App* list = root.add_subcommand("list", "List instances (state r running, p paused, s shutting down, c crashed)");
  list->add_flag("--json", *json, "Print JSON");
  registry.push_back({list, [json] { return run_list(*json); }});

  auto console_name = std::make_shared<std::string>();
  CLI::App* console = root.add_subcommand("console", "Attach to an instance's console (Ctrl-] detaches)");
  console->add_option("name", *console_name, "Instance name")->required();
  registry.push_back({console, [console_name] {
                        return finish(attach_console(InstanceStore::open(), *console_name, true), [] {});
                      }});

  register_request(root, registry, "shutdown", "Ask the guest to power off (ACPI, or Ctrl-Alt-Del under UML)", true);
  register_request(root, registry, "reboot", "Ask the guest to reboot", false);
  register_request(root, registry, "pause", "Pause an instance", false);
  register_request(root, registry, "unpause", "Resume a paused instance", false);

  auto destroy_name = std::make_shared<std::string>();
  CLI::App* destroy = root.add_subcommand("destroy", "Stop an instance at once and remove it (and its overlays "
                                                      "unless it is --persistent); a saved one's save file "
                                                      "cannot be restored after");
  destroy->add_option("name", *destroy_name, "Instance name")->required();
  registry.push_back({destroy, [destroy_name] {
                        return finish(destroy_instance(InstanceStore::open(), *destroy_name), [] {});
                      }});

  auto save_name = std::make_shared<std::string>();
  auto save_file = std::make_shared<std::string>();
  CLI::App* save = root.add_subcommand("save", "Save a running instance's state to a file and stop it (qemu)");
  save->add_option("name", *save_name, "Instance name")->required();
  save->add_option("file", *save_file, "Save file to write")->required();
  registry.push_back({save, [save_name, save_file] {
                        return finish(save_instance(InstanceStore::open(), *save_name, *save_file),
                                      [&] { fmt::print("{} saved to {}\n", *save_name, *save_file); });
                      }});

  auto restore_file = std::make_shared<std::string>();
  CLI::App* restore = root.add_subcommand("restore", "Start an instance again from a save file (once: it then "
                                                      "runs on from the saved disks)");
  restore->add_option("file", *restore_file, "Save file from `kiln save`")->required();
  registry.push_back({restore, [restore_file] {
                        Reporter reporter(Reporter::detect(false));
                        auto outcome = restore_instance(InstanceStore::open(), *restore_file, reporter);
                        return finish(outcome, [](const BootOutcome& o) {
                          fmt::print("{} restored (id {})\n", o.record.spec.name, o.record.spec.id);
                        });
                      }});
}

}  // namespace kiln::cli
