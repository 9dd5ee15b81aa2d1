// kiln validate RECIPE: checks a recipe without building anything.
#include <nlohmann/json.hpp>

#include "builder/plan.h"
#include "cli/command.h"
#include "recipes/recipe_parser.h"

namespace kiln::cli {
namespace {

struct ValidateFlags {
  std::string recipe;
  std::vector<std::string> sets;
  bool json = false;
};

void print_summary(const Recipe& recipe) {
  const BootstrapSection& b = recipe.bootstrap;
  std::string source = b.from.value.empty()
                           ? fmt::format("{} {}/{}, {} extra packages", b.tool.value, b.suite.value,
                                         b.variant.value, b.packages.value.size())
                           : fmt::format("import {}", b.from.value);
  fmt::print("{}: ok\n", recipe.file.string());
  fmt::print("  image      {} {}\n", recipe.image.name.value, recipe.image.version.value);
  fmt::print("  bootstrap  {}\n", source);
  fmt::print("  customize  {} steps\n", recipe.customize.steps.size());
  fmt::print("  storage    {} layout, {} {} bytes\n", name_of(recipe.storage.layout.value),
             name_of(recipe.storage.filesystem.value), recipe.storage.size.value);
  fmt::print("  outputs    {}\n", fmt::join(recipe.output.formats.value, ", "));
}

// The recipe, and its disk layout: whether everything fits storage.size.
Result<Recipe> validated(const ValidateFlags& flags) {
  KILN_ASSIGN(Recipe recipe, load_recipe(flags.recipe, flags.sets));
  KILN_TRY(plan_disk_layout(recipe, ImageIdentity{}));
  return recipe;
}

}  // namespace

void register_validate(CLI::App& root, Registry& registry) {
  auto flags = std::make_shared<ValidateFlags>();
  CLI::App* app = root.add_subcommand("validate", "Check a recipe without building anything");
  app->add_option("recipe", flags->recipe, "Recipe file (TOML)")->required();
  app->add_option("--set", flags->sets, "Override a recipe key: SECTION.KEY=VALUE (repeatable)");
  app->add_flag("--json", flags->json, "Print the result as JSON");
  registry.push_back({app, [flags] {
                        auto recipe = validated(*flags);
                        if (flags->json) {
                          nlohmann::json out = {{"recipe", flags->recipe}, {"valid", recipe.has_value()}};
                          if (recipe) out["sha256"] = recipe->hash;
                          else out["error"] = recipe.error().to_string();
                          fmt::print("{}\n", out.dump());
                        }
                        if (!recipe) return report_error(recipe.error());
                        if (!flags->json) print_summary(*recipe);
                        return 0;
                      }});
}

}  // namespace kiln::cli
