// RecipeDocs: the recipe reference, generated from the settings table and the
// customisation operation table, as terminal text (`kiln help recipe`,
// `kiln help customize`) and as Markdown (docs/recipe.md, kept in step by a
// test). Nothing here is written by hand, so the docs cannot drift.
#pragma once

#include <string>

namespace kiln {

std::string recipe_reference_text();
std::string customize_reference_text();
std::string recipe_reference_markdown();

}  // namespace kiln
