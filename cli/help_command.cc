// kiln help recipe|customize|container|xen: the reference, generated from the tables.
#include "cli/command.h"
#include "container/vm_container.h"
#include "formats/domain/xen_config.h"
#include "recipes/recipe_docs.h"

namespace kiln::cli {

void register_help(CLI::App& root, Registry& registry) {
  auto topic = std::make_shared<std::string>();
  auto markdown = std::make_shared<bool>(false);
  CLI::App* app = root.add_subcommand("help", "Reference: `kiln help recipe`, `kiln help customize`, `kiln help container`, `kiln help xen`");
  app->add_option("topic", *topic, "recipe, customize, container or xen (the Xen domain config keys)")
      ->required()
      ->check(CLI::IsMember({"recipe", "customize", "container", "xen"}));
  app->add_flag("--markdown", *markdown,
                "The full reference as Markdown (docs/recipe.md; docs/container.md; docs/xen-config.md)");
  registry.push_back({app, [topic, markdown] {
                        if (*topic == "container") fmt::print("{}", *markdown ? container_reference_markdown()
                                                                               : container_reference_text());
                        else if (*topic == "xen") fmt::print("{}", *markdown ? xen_config_reference_markdown()
                                                                             : xen_config_reference_text());
                        else if (*markdown) fmt::print("{}", recipe_reference_markdown());
                        else if (*topic == "recipe") fmt::print("{}", recipe_reference_text());
                        else fmt::print("{}", customize_reference_text());
                        return 0;
                      }});
}

}  // namespace kiln::cli
