// kiln help recipe|customize: the reference, generated from the tables.
#include "cli/command.h"
#include "recipes/recipe_docs.h"

namespace kiln::cli {

void register_help(CLI::App& root, Registry& registry) {
  auto topic = std::make_shared<std::string>();
  auto markdown = std::make_shared<bool>(false);
  CLI::App* app = root.add_subcommand("help", "Reference: `kiln help recipe`, `kiln help customize`");
  app->add_option("topic", *topic, "recipe or customize")->required()->check(CLI::IsMember({"recipe", "customize"}));
  app->add_flag("--markdown", *markdown, "The full reference as Markdown (docs/recipe.md)");
  registry.push_back({app, [topic, markdown] {
                        if (*markdown) fmt::print("{}", recipe_reference_markdown());
                        else if (*topic == "recipe") fmt::print("{}", recipe_reference_text());
                        else fmt::print("{}", customize_reference_text());
                        return 0;
                      }});
}

}  // namespace kiln::cli
