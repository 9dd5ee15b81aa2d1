// TomlReader: typed access to toml++ nodes for the recipe parser, turning
// every mismatch into an Error at the node's file:line:col. Internal to
// recipes/; the rest of kiln sees only Recipe.
#pragma once

#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <toml++/toml.h>

#include "base/error.h"
#include "recipes/recipe.h"

namespace kiln::recipes {

class TomlReader {
 public:
  TomlReader(std::string file, std::filesystem::path base_dir)
      : file_(std::move(file)), base_dir_(std::move(base_dir)) {}

  const std::string& file() const { return file_; }
  const std::filesystem::path& base_dir() const { return base_dir_; }

  Location at(const toml::source_region& source) const;
  Location at(const toml::node& node) const { return at(node.source()); }
  Location at(const toml::key& key) const { return at(key.source()); }

  // `what` names the value in messages, e.g. "storage.size".
  Result<Located<std::string>> string(const toml::node& node, std::string_view what) const;
  Result<Located<std::vector<std::string>>> string_list(const toml::node& node,
                                                        std::string_view what) const;
  Result<Located<int64_t>> integer(const toml::node& node, std::string_view what) const;
  Result<Located<uint64_t>> size(const toml::node& node, std::string_view what) const;
  Result<bool> boolean(const toml::node& node, std::string_view what) const;
  // A file mode: an integer (0o644 in TOML) or an octal string ("0644").
  Result<uint32_t> mode(const toml::node& node, std::string_view what) const;
  // A host path, resolved against the recipe's directory; it must exist.
  Result<std::filesystem::path> existing_file(const toml::node& node, std::string_view what) const;
  Result<const toml::table*> table(const toml::node& node, std::string_view what) const;

  // "unknown key 'sute' in [bootstrap]; did you mean 'suite'?"
  std::unexpected<Error> unknown_key(const toml::key& key, std::string_view section,
                                     std::span<const std::string_view> known) const;

 private:
  std::unexpected<Error> wrong_type(const toml::node& node, std::string_view what,
                                    std::string_view expected) const;
  std::string file_;
  std::filesystem::path base_dir_;
};

// The closest candidate by edit distance, or "" when nothing is close.
std::string_view closest_match(std::string_view word, std::span<const std::string_view> candidates);

}  // namespace kiln::recipes
