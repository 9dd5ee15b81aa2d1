// The two halves of reading a recipe's TOML, one per table: settings bound
// through recipes/recipe_schema.cc, and [customize] through
// recipes/customize_ops.cc. Internal to recipes/.
#pragma once

#include <toml++/toml.h>

#include "recipes/recipe.h"
#include "recipes/toml_reader.h"

namespace kiln::recipes {

// Reads every section except [customize]: types, choices, defaults, unknown keys.
Result<> bind_settings(const toml::table& root, const TomlReader& reader, Recipe& recipe);

// Checks the [storage] rules between keys and fills in the defaults that
// depend on other keys (recipes/storage_checks.cc).
Result<> check_storage(Recipe& recipe);

// Reads [customize] (may be null) into steps in application order.
Result<> parse_customize(const toml::table* section, const TomlReader& reader,
                         CustomizeSection& customize);

}  // namespace kiln::recipes
