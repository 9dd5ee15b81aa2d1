// kiln list | console | shutdown | reboot | destroy | pause | unpause |
// save | restore: xm's lifecycle commands for kiln instances.
#include <sys/stat.h>
#include <unistd.h>

#include <ctime>

#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "base/files.h"
#include "cli/command.h"
#include "runtime/instance_manager.h"
#include "runtime/instance_runtime.h"
#include "runtime/libvirt_instances.h"

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
                        {"mac", r.spec.network.first_mac()},
                        {"network", network_json(r.spec.network)},
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

// The instances kiln made on a libvirt host (marked by its metadata).
int run_libvirt_list(const std::string& uri, bool json) {
  auto instances = list_libvirt_instances(uri);
  if (!instances) return report_error(instances.error());
  if (json) {
    nlohmann::json out = nlohmann::json::array();
    for (const LibvirtInstance& i : *instances) {
      nlohmann::json one = {{"name", i.name},  {"id", i.id},         {"state", i.state},
                            {"state_letter", std::string(1, i.state_letter)},
                            {"memory_mib", i.memory_mib}, {"vcpus", i.vcpus}, {"backend", "libvirt"},
                            {"connect", uri}, {"source", i.source}};
      if (i.ready_seconds) one["ready_seconds"] = *i.ready_seconds;
      out.push_back(one);
    }
    fmt::print("{}\n", out.dump(2));
    return 0;
  }
  fmt::print("{:<20} {:<16} {:>6} {:>5} {:<5} {:<8} {}\n", "Name", "ID", "Mem", "VCPUs", "State", "Backend", "Ready");
  for (const LibvirtInstance& i : *instances)
    fmt::print("{:<20} {:<16} {:>6} {:>5} {:<5} {:<8} {}\n", i.name, i.id, i.memory_mib, i.vcpus,
               std::string(1, i.state_letter), "libvirt", i.ready_seconds ? fmt::format("{:.1f}s", *i.ready_seconds) : "-");
  return 0;
}

int run_list(bool json, const std::string& connect) {
  if (std::string uri = connect_uri(connect); !uri.empty()) return run_libvirt_list(uri, json);
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
  // What crashed or failed to get ready left its console log, instance or
  // no instance: `kiln destroy NAME` removes it as it removes an instance.
  std::vector<std::string> kept = store.kept_log_names();
  if (!kept.empty())
    fmt::print("\nConsole logs kept (`kiln console --log NAME` shows one, `kiln destroy NAME` removes it): {}\n",
               fmt::join(kept, ", "));
  return 0;
}

// When a file was last written, as people read it.
std::string written_at(const std::filesystem::path& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return "?";
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%d %H:%M:%S", std::localtime(&st.st_mtime));
  return text;
}

// `kiln console --log`: the log on stdout, and on stderr which log it is.
Result<> show_console_log(const std::string& name) {
  KILN_ASSIGN(ConsoleLog log, find_console_log(InstanceStore::open(), name));
  KILN_ASSIGN(std::string text, read_file(log.path));
  if (log.instance)
    fmt::print(stderr, "kiln: the console log of {} ({}), {}\n", name, state_name(log.instance->state),
               log.path.string());
  else
    fmt::print(stderr, "kiln: {} is gone; its console log was kept on {} in {} (`kiln destroy {}` removes it)\n",
               name, written_at(log.path), log.path.string(), name);
  if (!log.also_kept.empty())
    fmt::print(stderr, "kiln: a console log of {} from {} is kept too, in {}\n", name, written_at(log.also_kept),
               log.also_kept.string());
  return write_all(STDOUT_FILENO, text.data(), text.size(), "stdout");
}

// A request to the instance's supervisor; `--wait` waits for it to stop.
void register_request(CLI::App& root, Registry& registry, const std::string& verb, const std::string& help,
                      bool can_wait) {
  auto name = std::make_shared<std::string>();
  auto wait = std::make_shared<int>(0);
  CLI::App* app = root.add_subcommand(verb, help);
  app->add_option("name", *name, "Instance name")->required();
  if (can_wait) app->add_flag("--wait{60}", *wait, "Wait until it has stopped (up to 60 s; --wait=SECONDS)");
  auto connect = add_connect(app);
  registry.push_back({app, [name, wait, verb, connect] {
                        return finish(instance_runtime(*connect)->request(*name, verb, std::chrono::seconds(*wait)),
                                      [] {});
                      }});
}

}  // namespace

void register_instance_commands(CLI::App& root, Registry& registry) {
  auto json = std::make_shared<bool>(false);
  CLI::App* list = root.add_subcommand("list", "List instances (state r running, p paused, s shutting down, c crashed)");
  list->add_flag("--json", *json, "Print JSON");
  auto list_connect = add_connect(list);
  registry.push_back({list, [json, list_connect] { return run_list(*json, *list_connect); }});

  auto console_name = std::make_shared<std::string>();
  auto console_log = std::make_shared<bool>(false);
  CLI::App* console = root.add_subcommand("console", "Attach to an instance's console (Ctrl-] detaches)");
  console->add_option("name", *console_name, "Instance name")->required();
  console->add_flag("--log", *console_log,
                    "Print the console log instead: the instance's own, or the one kept when an instance of the "
                    "name crashed or did not get ready in time (kept after it is gone, until `kiln destroy NAME`)");
  auto console_connect = add_connect(console);
  registry.push_back({console, [console_name, console_log, console_connect] {
                        std::string uri = connect_uri(*console_connect);
                        if (*console_log && !uri.empty())
                          return report_error(Error{ErrorKind::kBadInput, fmt::format("--log with --connect {}: "
                                                    "libvirt keeps the console log on its host", uri), {}, {}});
                        if (*console_log) return finish(show_console_log(*console_name), [] {});
                        return finish(instance_runtime(uri)->console(*console_name), [] {});
                      }});

  register_request(root, registry, "shutdown", "Ask the guest to power off (ACPI, or Ctrl-Alt-Del under UML)", true);
  register_request(root, registry, "reboot", "Ask the guest to reboot", false);
  register_request(root, registry, "pause", "Pause an instance", false);
  register_request(root, registry, "unpause", "Resume a paused instance", false);

  auto destroy_name = std::make_shared<std::string>();
  CLI::App* destroy = root.add_subcommand("destroy", "Stop an instance at once and remove it (and its overlays "
                                                      "unless it is --persistent, and the console log kept of it, "
                                                      "also once it is gone); a saved one's save file "
                                                      "cannot be restored after");
  destroy->add_option("name", *destroy_name, "Instance name")->required();
  auto destroy_connect = add_connect(destroy);
  registry.push_back({destroy, [destroy_name, destroy_connect] {
                        return finish(instance_runtime(*destroy_connect)->destroy(*destroy_name), [] {});
                      }});

  auto save_name = std::make_shared<std::string>();
  auto save_file = std::make_shared<std::string>();
  CLI::App* save = root.add_subcommand("save", "Save a running instance's state to a file and stop it (qemu, or "
                                                "through libvirt with --connect)");
  save->add_option("name", *save_name, "Instance name")->required();
  save->add_option("file", *save_file, "Save file to write; with --connect, a path on the libvirt host (libvirt "
                                       "writes it there; a relative path only for a local URI)")->required();
  auto save_connect = add_connect(save);
  registry.push_back({save, [save_name, save_file, save_connect] {
                        return finish(instance_runtime(*save_connect)->save(*save_name, *save_file),
                                      [&] { fmt::print("{} saved to {}\n", *save_name, *save_file); });
                      }});

  auto restore_file = std::make_shared<std::string>();
  CLI::App* restore = root.add_subcommand("restore", "Start an instance again from a save file (once: it then "
                                                      "runs on from the saved disks)");
  restore->add_option("file", *restore_file, "Save file from `kiln save`; with --connect, a path on the libvirt "
                                             "host")->required();
  auto restore_connect = add_connect(restore);
  registry.push_back({restore, [restore_file, restore_connect] {
                        return finish(instance_runtime(*restore_connect)->restore(*restore_file),
                                      [](const std::string& said) { fmt::print("{}\n", said); });
                      }});
}

}  // namespace kiln::cli
