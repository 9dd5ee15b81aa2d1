// A recipe parsed from text and planned as a bake would plan it, with a
// fixed mirror and clock: for tests of what the plan decides.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <gtest/gtest.h>

#include "builder/plan.h"
#include "recipes/recipe_parser.h"

namespace kiln::testing {

// An image whose root is LVM on LUKS, the layout that asks most of the
// image's initramfs.
inline constexpr std::string_view kEncryptedLvmRecipe = R"([image]
name = "vault"
[bootstrap]
suite = "bookworm"
[storage]
layout = "lvm"
[storage.luks]
passphrase_file = "test.passphrase"
[customize]
hostname = "vault"
)";

struct Planned {
  Recipe recipe;
  Plan plan;  // its recipe points at the one above
};

// `text` as r.toml, its relative paths from tests/recipes; `epoch` is
// SOURCE_DATE_EPOCH (nullopt: none).
inline Planned plan_recipe(std::string_view text, std::vector<std::string> overrides = {},
                           std::optional<int64_t> epoch = 1700000000) {
  auto recipe = parse_recipe(text, "r.toml", KILN_SOURCE_DIR "/tests/recipes", overrides);
  EXPECT_TRUE(recipe) << recipe.error().to_string();
  Planned out{std::move(*recipe), {}};
  auto plan = make_plan(out.recipe, {epoch, 1800000000, "http://mirror.example/debian"});
  EXPECT_TRUE(plan) << plan.error().to_string();
  out.plan = std::move(*plan);
  out.plan.recipe = &out.recipe;
  return out;
}

}  // namespace kiln::testing
