// kiln bake RECIPE -o DIR: builds an image from a recipe.
#include <nlohmann/json.hpp>

#include "base/size.h"
#include "base/source_date_epoch.h"
#include "builder/baker.h"
#include "cli/command.h"
#include "recipes/recipe_parser.h"

namespace kiln::cli {
namespace {

struct BakeFlags {
  std::string recipe;
  std::string output;
  std::vector<std::string> sets;
  std::string cache;
  bool no_cache = false;
  bool json = false;
  std::string target;
};

void print_result(const BakeResult& result, const Recipe& recipe, Reporter& reporter) {
  if (reporter.mode() == Reporter::Mode::kJson) {
    nlohmann::json stages = nlohmann::json::array();
    for (const auto& stage : result.stages)
      stages.push_back({{"name", stage.name}, {"key", stage.key}, {"cached", stage.cached},
                        {"seconds", stage.seconds}});
    nlohmann::json artifacts = nlohmann::json::array();
    for (const auto& artifact : result.artifacts)
      artifacts.push_back(artifact.sha256.empty()
                              ? nlohmann::json{{"file", artifact.file}, {"size", artifact.size}}
                              : nlohmann::json{{"file", artifact.file}, {"size", artifact.size}, {"sha256", artifact.sha256}});
    reporter.event("result", {{"output", result.output_dir.string()},
                              {"target", result.target.string()},
                              {"seconds", result.seconds},
                              {"stages", stages},
                              {"artifacts", artifacts}});
    return;
  }
  fmt::print("Baked {} {} into {} in {:.1f} s\n", recipe.image.name.value, recipe.image.version.value,
             result.output_dir.string(), result.seconds);
  for (const auto& artifact : result.artifacts)
    fmt::print("  {:<28} {:>10}  {}\n", artifact.file, format_size(artifact.size),
               artifact.sha256.empty() ? "sha256 at publish (output.disk_sha256)" : "sha256:" + artifact.sha256.substr(0, 16));
  if (!result.target.empty()) fmt::print("Wrote the image onto {}\n", result.target.string());
}

int run_bake(const BakeFlags& flags) {
  auto recipe = load_recipe(flags.recipe, flags.sets);
  if (!recipe) return report_error(recipe.error());
  auto epoch = source_date_epoch_from_env();
  if (!epoch) return report_error(epoch.error());
  BakeOptions options;
  options.output_dir = flags.output.empty() ? "out/" + recipe->image.name.value : flags.output;
  options.cache_dir = flags.cache;
  options.use_cache = !flags.no_cache;
  if (auto self = this_program()) options.hook_program = *self;
  options.source_date_epoch = *epoch;
  options.target = flags.target;
  Reporter reporter(Reporter::detect(flags.json));
  auto result = bake(*recipe, options, reporter);
  return finish(result, [&](const BakeResult& done) { print_result(done, *recipe, reporter); });
}

}  // namespace

void register_bake(CLI::App& root, Registry& registry) {
  auto flags = std::make_shared<BakeFlags>();
  CLI::App* app = root.add_subcommand("bake", "Build an image from a recipe");
  app->add_option("recipe", flags->recipe, "Recipe file (TOML); see `kiln help recipe`")->required();
  app->add_option("-o,--output", flags->output,
                  "Output directory (default: out/NAME); replaced as a whole when the bake succeeds");
  app->add_option("--set", flags->sets,
                  "Override a recipe key, e.g. --set customize.hostname=web1 (repeatable)");
  app->add_option("--cache", flags->cache,
                  "Stage cache directory, with the .deb files bakes downloaded in its packages/ (default: "
                  "$KILN_CACHE, else ~/.cache/kiln)");
  app->add_flag("--no-cache", flags->no_cache, "Neither use nor fill the stage cache or its packages");
  app->add_flag("--json", flags->json, "Progress and result as JSON lines on stdout");
  app->add_option("--target", flags->target,
                  "Also write the image onto a host block device: lvm:VG/LV (created from storage.size when "
                  "missing; needs device-mapper) or /dev/... (refused when mounted, in use or too small)");
  app->footer(
      "Stages: bootstrap (cached; mmdebstrap takes the cache's .deb files that the suite's signed index\n"
      "lists and the cache keeps what it downloads), customize (in-image steps; cached), assemble (ext4, GPT, ESP),\n"
      "finalize (outputs, manifest.json). Set SOURCE_DATE_EPOCH for byte-identical rebakes.\n"
      "See `kiln help recipe` and `kiln help customize`.");
  registry.push_back({app, [flags] { return run_bake(*flags); }});
}

}  // namespace kiln::cli
