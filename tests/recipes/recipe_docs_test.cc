// The recipe reference is generated from the tables, and the copy in docs/
// must be what the tables say today.
#include "recipes/recipe_docs.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "recipes/customize_ops.h"
#include "recipes/recipe_schema.h"
#include "tests/test_support.h"

namespace kiln {
namespace {

using ::testing::HasSubstr;

TEST(RecipeDocs, DocsFolderCopyIsUpToDate) {
  EXPECT_EQ(testing::read_text(testing::source_path("docs/recipe.md")), recipe_reference_markdown())
      << "regenerate with: build/kiln help recipe --markdown > docs/recipe.md";
}

TEST(RecipeDocs, EverySettingAndOperationIsInEveryReference) {
  std::string text = recipe_reference_text();
  std::string ops = customize_reference_text();
  std::string markdown = recipe_reference_markdown();
  for (const SettingInfo& setting : recipe_settings()) {
    EXPECT_THAT(text, HasSubstr("  " + std::string(setting.key) + " (")) << setting.key;
    EXPECT_THAT(markdown, HasSubstr("| `" + std::string(setting.key) + "` |")) << setting.key;
  }
  for (const CustomizeOpInfo& op : customize_operations()) {
    EXPECT_THAT(ops, HasSubstr("\n" + std::string(op.key) + " = ")) << op.key;
    EXPECT_THAT(markdown, HasSubstr("| `" + std::string(op.key) + "` |")) << op.key;
  }
  for (const FileActionInfo& action : file_actions()) EXPECT_THAT(ops, HasSubstr(std::string(action.key) + " = "));
}

}  // namespace
}  // namespace kiln
