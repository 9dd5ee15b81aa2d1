// RecipeParser: reads a recipe file (TOML) into a validated Recipe. Command
// line overrides (--set KEY=VALUE) are merged before validation, so they get
// the same checks and their errors name the --set argument.
#pragma once

#include <filesystem>
#include <span>
#include <string>
#include <string_view>

#include "base/error.h"
#include "recipes/recipe.h"

namespace kiln {

Result<Recipe> load_recipe(const std::filesystem::path& file,
                           std::span<const std::string> overrides = {});

// As load_recipe, from text; `file_name` is used in messages and relative
// paths resolve against `base_dir`.
Result<Recipe> parse_recipe(std::string_view text, const std::string& file_name,
                            const std::filesystem::path& base_dir,
                            std::span<const std::string> overrides = {});

}  // namespace kiln
