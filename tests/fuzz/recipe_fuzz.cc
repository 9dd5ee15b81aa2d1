// Fuzzes the recipe parser. Beyond "no crash": whatever error comes back is
// a bad-input error with the file name in its location, and a recipe that
// parses hashes the same when parsed again.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "recipes/recipe_parser.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto recipe = kiln::parse_recipe(text, "fuzz.toml", "/nonexistent");
  if (!recipe) {
    const kiln::Error& error = recipe.error();
    if (error.kind != kiln::ErrorKind::kBadInput || error.where.file.empty()) {
      std::fprintf(stderr, "recipe error without kind or place: %s\n", error.to_string().c_str());
      std::abort();
    }
    return 0;
  }
  auto again = kiln::parse_recipe(text, "fuzz.toml", "/nonexistent");
  if (!again || again->hash != recipe->hash) {
    std::fprintf(stderr, "the same recipe parsed differently\n");
    std::abort();
  }
  return 0;
}
