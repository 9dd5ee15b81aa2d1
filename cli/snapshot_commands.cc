// kiln snapshot make | list | prune: the snapshots `kiln boot --from-snapshot`
// resumes instances from (runtime/snapshot.h), kept beside the stage cache.
#include <ctime>

#include <nlohmann/json.hpp>

#include "base/duration.h"
#include "base/size.h"
#include "cli/boot_flags.h"
#include "cli/command.h"
#include "runtime/instance_manager.h"

namespace kiln::cli {
namespace {

struct SnapshotFlags {
  BootFlags make;
  bool all = false;
  bool json = false;
};

nlohmann::json entry_json(const SnapshotEntry& entry, const std::string& stale) {
  return {{"key", entry.key},   {"image", entry.image},     {"memory_mib", entry.memory_mib},
          {"vcpus", entry.vcpus}, {"qemu", entry.qemu},     {"made_at", entry.made_at},
          {"size", entry.bytes},  {"path", entry.dir.string()}, {"stale", stale}};
}

int run_make(SnapshotFlags& flags) {
  if (auto ok = apply_flags(flags.make); !ok) return report_error(ok.error());
  BootRequest& request = flags.make.request;
  request.networks = {"none"};
  request.snapshots = snapshot_root();
  Reporter reporter(Reporter::detect(flags.json));
  InstanceStore store = InstanceStore::open();
  auto made = make_instance_snapshot(store, request, reporter);
  return finish(made, [&](const SnapshotMade& done) {
    if (flags.json) {
      nlohmann::json out = entry_json(done.entry, "");
      out["made"] = done.made;
      fmt::print("{}\n", out.dump());
      return;
    }
    fmt::print("{} snapshot {} of {} ({} MiB, {} vCPUs): {} in {}\n", done.made ? "made" : "kept",
               done.entry.key.substr(0, 12), done.entry.image, done.entry.memory_mib, done.entry.vcpus,
               format_size(done.entry.bytes), done.entry.dir.string());
  });
}

int run_list(const SnapshotFlags& flags) {
  InstanceStore store = InstanceStore::open();
  SnapshotStore snapshots(snapshot_root());
  FileHashCache file_hashes = store.file_hashes();
  std::vector<SnapshotEntry> entries = snapshots.list();
  if (flags.json) {
    nlohmann::json out = nlohmann::json::array();
    for (const SnapshotEntry& entry : entries) out.push_back(entry_json(entry, snapshot_staleness(entry, file_hashes)));
    fmt::print("{}\n", out.dump(2));
    return 0;
  }
  int64_t now = static_cast<int64_t>(std::time(nullptr));
  uint64_t total = 0;
  fmt::print("{:<14} {:>6} {:>5} {:>10} {:>9}  {}\n", "KEY", "MEMORY", "VCPUS", "SIZE", "MADE", "IMAGE");
  for (const SnapshotEntry& entry : entries) {
    std::string stale = snapshot_staleness(entry, file_hashes);
    fmt::print("{:<14} {:>5}M {:>5} {:>10} {:>9}  {}{}\n", entry.key.substr(0, 12), entry.memory_mib, entry.vcpus,
               format_size(entry.bytes), format_age(now - entry.made_at) + " ago", entry.image,
               stale.empty() ? "" : " (stale: " + stale + ")");
    total += entry.bytes;
  }
  fmt::print("{} {}, {} in {}\n", entries.size(), entries.size() == 1 ? "snapshot" : "snapshots", format_size(total),
             snapshots.root().string());
  return 0;
}

int run_prune(const SnapshotFlags& flags) {
  InstanceStore store = InstanceStore::open();
  SnapshotStore snapshots(snapshot_root());
  FileHashCache file_hashes = store.file_hashes();
  nlohmann::json removed = nlohmann::json::array();
  uint64_t freed = 0;
  for (const SnapshotEntry& entry : snapshots.list()) {
    std::string why = flags.all ? "--all" : snapshot_staleness(entry, file_hashes);
    if (why.empty()) continue;
    auto lock = snapshots.lock(entry.key);
    if (!lock) return report_error(lock.error());
    if (auto gone = snapshots.remove(entry.key); !gone) return report_error(gone.error());
    freed += entry.bytes;
    removed.push_back(entry_json(entry, why));
    if (!flags.json)
      fmt::print("removed {} of {} ({}): {}\n", entry.key.substr(0, 12), entry.image, format_size(entry.bytes), why);
  }
  snapshots.remove_leftovers();
  if (flags.json) fmt::print("{}\n", nlohmann::json{{"removed", removed}, {"freed", freed}}.dump(2));
  else fmt::print("freed {}\n", format_size(freed));
  return 0;
}

}  // namespace

void register_snapshot_commands(CLI::App& root, Registry& registry) {
  auto flags = std::make_shared<SnapshotFlags>();
  CLI::App* snapshot = root.add_subcommand(
      "snapshot", "Make, list or prune the snapshots that `kiln boot --from-snapshot` resumes instances from");
  snapshot->require_subcommand(1);

  CLI::App* make = snapshot->add_subcommand(
      "make", "Boot the image once to ready with no personality, quiesce it and save it, for instances of this "
              "shape to resume from (kept unless it is there and intact already)");
  make->add_option("image", flags->make.request.source, "Image directory from `kiln bake`")->required();
  add_shape_options(make, flags->make);
  make->add_flag("--json", flags->json, "Print the snapshot as JSON");
  registry.push_back({make, [flags] { return run_make(*flags); }});

  CLI::App* list = snapshot->add_subcommand(
      "list", "List snapshots, newest first, saying which are stale (their image changed or is gone, or qemu was "
              "replaced)");
  list->add_flag("--json", flags->json, "Print JSON");
  registry.push_back({list, [flags] { return run_list(*flags); }});

  CLI::App* prune = snapshot->add_subcommand(
      "prune", "Remove stale snapshots (or all of them) and what killed makes left");
  prune->add_flag("--all", flags->all, "Remove every snapshot");
  prune->add_flag("--json", flags->json, "Print JSON");
  registry.push_back({prune, [flags] { return run_prune(*flags); }});
}

}  // namespace kiln::cli
