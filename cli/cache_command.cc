// kiln cache list | prune: manages the stage cache.
#include <ctime>

#include <nlohmann/json.hpp>

#include "base/size.h"
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

std::string age(int64_t seconds_ago) {
  if (seconds_ago < 120) return fmt::format("{} s", seconds_ago);
  if (seconds_ago < 7200) return fmt::format("{} min", seconds_ago / 60);
  if (seconds_ago < 172800) return fmt::format("{} h", seconds_ago / 3600);
  return fmt::format("{} d", seconds_ago / 86400);
}

nlohmann::json entry_json(const CacheEntry& entry) {
  return {{"key", entry.key},         {"stage", entry.stage},         {"description", entry.description},
          {"size", entry.size_bytes}, {"created", entry.created},     {"last_used", entry.last_used},
          {"path", entry.dir.string()}};
}

int run_list(const CacheFlags& flags) {
  StageCache cache = open_cache(flags);
  auto entries = cache.list();
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
                 format_size(entry.size_bytes), age(now - entry.last_used) + " ago", entry.description);
      total += entry.size_bytes;
    }
    fmt::print("{} entries, {} in {}\n", list.size(), format_size(total), cache.root().string());
  });
}

Result<PruneOptions> prune_options(const CacheFlags& flags) {
  PruneOptions options;
  options.all = flags.all;
  if (!flags.unused_for.empty()) {
    std::string text = flags.unused_for;
    char unit = text.back();
    int64_t factor = unit == 'd' ? 86400 : unit == 'h' ? 3600 : unit == 'm' ? 60 : unit == 's' ? 1 : 0;
    if (factor) text.pop_back();
    try {
      size_t used = 0;
      int64_t value = std::stoll(text, &used);
      if (used != text.size() || value < 0 || factor == 0) throw std::invalid_argument(text);
      options.unused_for = std::chrono::seconds(value * factor);
    } catch (const std::exception&) {
      return fail(ErrorKind::kBadInput, "--unused-for \"{}\": expected a number with a unit s, m, h or d, e.g. 7d",
                  flags.unused_for);
    }
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
      fmt::print("{}\n", nlohmann::json{{"removed", removed}, {"freed", pruned.freed_bytes}}.dump(2));
      return;
    }
    for (const auto& entry : pruned.removed)
      fmt::print("removed {} {} ({})\n", entry.key.substr(0, 12), entry.stage, entry.description);
    fmt::print("freed {}\n", format_size(pruned.freed_bytes));
  });
}

}  // namespace

void register_cache(CLI::App& root, Registry& registry) {
  auto flags = std::make_shared<CacheFlags>();
  CLI::App* cache = root.add_subcommand("cache", "List or prune the stage cache");
  cache->require_subcommand(1);
  cache->add_option("--cache", flags->root, "Cache directory (default: $KILN_CACHE, else ~/.cache/kiln)");

  CLI::App* list = cache->add_subcommand("list", "List cached stages, most recently used first");
  list->add_flag("--json", flags->json, "Print JSON");
  registry.push_back({list, [flags] { return run_list(*flags); }});

  CLI::App* prune = cache->add_subcommand(
      "prune", "Remove cached stages (default: those unused for 30 days) and leftovers of killed bakes");
  prune->add_flag("--all", flags->all, "Remove every entry");
  prune->add_option("--unused-for", flags->unused_for, "Remove entries unused for this long, e.g. 7d, 12h");
  prune->add_option("--max-size", flags->max_size, "Then remove least recently used entries down to this size, e.g. 20G");
  prune->add_flag("--json", flags->json, "Print JSON");
  registry.push_back({prune, [flags] { return run_prune(*flags); }});
}

}  // namespace kiln::cli
