// kiln cache list | prune: manages the stage cache.
#include <algorithm>
#include <ctime>

#include <nlohmann/json.hpp>

#include "base/duration.h"
#include "base/size.h"
#include "builder/bootstrap.h"
#include "builder/package_cache.h"
#include "builder/stage_cache.h"
#include "cli/command.h"

namespace kiln::cli {
namespace {

struct CacheFlags {
  std::string root;
  bool json = false;
  bool all = false;
  std::string unused_for;
  std::string max_size;
};

StageCache open_cache(const CacheFlags& flags) {
  return StageCache(flags.root.empty() ? StageCache::default_root() : std::filesystem::path(flags.root));
}

nlohmann::json entry_json(const CacheEntry& entry) {
  return {{"key", entry.key},         {"stage", entry.stage},         {"description", entry.description},
          {"size", entry.size_bytes}, {"created", entry.created},     {"last_used", entry.last_used},
          {"path", entry.dir.string()}};
}

// The package cache, as one entry of the list: a line for each .deb would
// bury the stages.
std::optional<CacheEntry> packages_entry(const StageCache& cache) {
  auto packages = PackageCache(PackageCache::dir_in(cache.root())).list();
  if (!packages || packages->empty()) return std::nullopt;
  CacheEntry entry;
  entry.key = "packages";
  entry.stage = "packages";
  entry.dir = PackageCache::dir_in(cache.root());
  for (const CachedPackage& package : *packages) {
    entry.size_bytes += package.size_bytes;
    entry.last_used = std::max(entry.last_used, package.last_used);
  }
  entry.description = fmt::format("{} .deb files kept for later bakes", packages->size());
  return entry;
}

int run_list(const CacheFlags& flags) {
  StageCache cache = open_cache(flags);
  auto entries = cache.list();
  if (entries) {
    if (auto packages = packages_entry(cache)) entries->push_back(std::move(*packages));
  }
  return finish(entries, [&](const std::vector<CacheEntry>& list) {
    if (flags.json) {
      nlohmann::json out = nlohmann::json::array();
      for (const auto& entry : list) out.push_back(entry_json(entry));
      fmt::print("{}\n", out.dump(2));
      return;
    }
    int64_t now = static_cast<int64_t>(std::time(nullptr));
    uint64_t total = 0;
    fmt::print("{:<14} {:<10} {:>10} {:>9}  {}\n", "KEY", "STAGE", "SIZE", "USED", "DESCRIPTION");
    for (const auto& entry : list) {
      fmt::print("{:<14} {:<10} {:>10} {:>9}  {}\n", entry.key.substr(0, 12), entry.stage,
                 format_size(entry.size_bytes), format_age(now - entry.last_used) + " ago", entry.description);
      total += entry.size_bytes;
    }
    size_t stages = std::count_if(list.begin(), list.end(), [](const CacheEntry& e) { return e.stage != "packages"; });
    fmt::print("{} {}{}, {} in {}\n", stages, stages == 1 ? "stage" : "stages",
               stages == list.size() ? "" : " and the packages", format_size(total), cache.root().string());
  });
}

Result<PruneOptions> prune_options(const CacheFlags& flags) {
  PruneOptions options;
  options.all = flags.all;
  if (!flags.unused_for.empty()) {
    KILN_ASSIGN(options.unused_for, parse_duration(flags.unused_for, "--unused-for"));
  }
  if (!flags.max_size.empty()) {
    KILN_ASSIGN(options.max_size_bytes, parse_size(flags.max_size));
  }
  if (!options.all && !options.unused_for && !options.max_size_bytes)
    options.unused_for = std::chrono::seconds(30 * 86400);
  return options;
}

int run_prune(const CacheFlags& flags) {
  auto options = prune_options(flags);
  if (!options) return report_error(options.error());
  StageCache cache = open_cache(flags);
  auto lock = CacheLock::exclusive(cache);
  if (!lock) return report_error(lock.error());
  auto result = cache.prune(*options);
  return finish(result, [&](const PruneResult& pruned) {
    if (flags.json) {
      nlohmann::json removed = nlohmann::json::array();
      for (const auto& entry : pruned.removed) removed.push_back(entry_json(entry));
      fmt::print("{}\n", nlohmann::json{{"removed", removed},
                                        {"removed_packages", pruned.removed_packages},
                                        {"freed", pruned.freed_bytes}}
                             .dump(2));
      return;
    }
    for (const auto& entry : pruned.removed)
      fmt::print("removed {} {} ({})\n", entry.key.substr(0, 12), entry.stage, entry.description);
    if (pruned.removed_packages) fmt::print("removed {} cached .deb files\n", pruned.removed_packages);
    fmt::print("freed {}\n", format_size(pruned.freed_bytes));
  });
}

// mmdebstrap's hooks call this; their "I: " and "W: " lines become the bake's
// notes and warnings.
int run_bootstrap_hook_command(const std::string& point, const std::string& cache_dir,
                               const std::vector<std::string>& initramfs_modules, const std::string& rootfs) {
  auto report = run_bootstrap_hook(point, cache_dir, initramfs_modules, rootfs, system_runner());
  return finish(report, [](const BootstrapHookReport& done) {
    for (const std::string& note : done.notes) fmt::print(stderr, "I: {}\n", note);
    for (const std::string& warning : done.warnings) fmt::print(stderr, "W: {}\n", warning);
  });
}

}  // namespace

void register_cache(CLI::App& root, Registry& registry) {
  auto flags = std::make_shared<CacheFlags>();
  CLI::App* cache = root.add_subcommand("cache", "List or prune the stage cache and its downloaded packages");
  cache->require_subcommand(1);
  cache->fallthrough();  // --cache after list or prune, too
  cache->add_option("--cache", flags->root, "Cache directory (default: $KILN_CACHE, else ~/.cache/kiln)");

  CLI::App* list = cache->add_subcommand("list", "List cached stages, most recently used first");
  list->add_flag("--json", flags->json, "Print JSON");
  registry.push_back({list, [flags] { return run_list(*flags); }});

  CLI::App* prune = cache->add_subcommand(
      "prune", "Remove cached stages and .deb files (default: those unused for 30 days) and leftovers of killed "
               "bakes");
  prune->add_flag("--all", flags->all, "Remove every entry");
  prune->add_option("--unused-for", flags->unused_for, "Remove entries unused for this long, e.g. 7d, 12h");
  prune->add_option("--max-size", flags->max_size, "Then remove least recently used entries down to this size, e.g. 20G");
  prune->add_flag("--json", flags->json, "Print JSON");
  registry.push_back({prune, [flags] { return run_prune(*flags); }});

  struct Hook {
    std::string point;
    std::string cache_dir;
    std::vector<std::string> initramfs_modules;
    std::string rootfs;
  };
  auto hook = std::make_shared<Hook>();
  CLI::App* hook_app = root.add_subcommand(
      "bootstrap-hook", "kiln's part in mmdebstrap's setup and customize hooks (run by kiln bake, not by hand)");
  hook_app->group("Internal");
  hook_app->add_option("point", hook->point, "setup or customize")
      ->required()
      ->check(CLI::IsMember({"setup", "customize"}));
  hook_app->add_option("--cache", hook->cache_dir, "The package cache directory (none: no package cache)");
  hook_app->add_option("--initramfs-modules", hook->initramfs_modules, "The modules the initramfs carries (comma-separated)")
      ->delimiter(',');
  hook_app->add_option("rootfs", hook->rootfs, "The tree mmdebstrap is building ($1 of the hook)")->required();
  registry.push_back({hook_app, [hook] {
                        return run_bootstrap_hook_command(hook->point, hook->cache_dir, hook->initramfs_modules,
                                                          hook->rootfs);
                      }});
}

}  // namespace kiln::cli
