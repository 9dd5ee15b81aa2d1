#include "recipes/toml_reader.h"

#include "recipes/value_checks.h"

#include <algorithm>
#include <charconv>

#include "base/size.h"

namespace kiln::recipes {
namespace {

std::string_view type_name(toml::node_type type) {
  switch (type) {
    case toml::node_type::string: return "a string";
    case toml::node_type::integer: return "an integer";
    case toml::node_type::floating_point: return "a number";
    case toml::node_type::boolean: return "a boolean";
    case toml::node_type::array: return "an array";
    case toml::node_type::table: return "a table";
    case toml::node_type::date:
    case toml::node_type::time:
    case toml::node_type::date_time: return "a date or time";
    default: return "nothing";
  }
}

// Optimal string alignment distance: a swap of neighbours ("suod" for
// "sudo") costs one edit, as it does for the typist.
size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::vector<size_t>> d(a.size() + 1, std::vector<size_t>(b.size() + 1));
  for (size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
  for (size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
    }
  }
  return d[a.size()][b.size()];
}

}  // namespace

std::string_view closest_match(std::string_view word, std::span<const std::string_view> candidates) {
  std::string_view best;
  size_t best_distance = std::max<size_t>(2, word.size() / 3) + 1;
  for (std::string_view candidate : candidates) {
    size_t distance = edit_distance(word, candidate);
    if (distance < best_distance) {
      best = candidate;
      best_distance = distance;
    }
  }
  return best;
}

Location TomlReader::at(const toml::source_region& source) const {
  std::string file = source.path && !source.path->empty() ? *source.path : file_;
  // --set values have no useful line and column of their own.
  if (file.starts_with("--set ")) return Location{file, 0, 0};
  return Location{file, static_cast<int>(source.begin.line), static_cast<int>(source.begin.column)};
}

std::unexpected<Error> TomlReader::wrong_type(const toml::node& node, std::string_view what,
                                              std::string_view expected) const {
  return fail_at(at(node), "{}: expected {}, found {}", what, expected, type_name(node.type()));
}

Result<Located<std::string>> TomlReader::string(const toml::node& node, std::string_view what) const {
  const auto* value = node.as_string();
  if (!value) return wrong_type(node, what, "a string");
  return Located<std::string>{value->get(), at(node), true};
}

Result<Located<std::vector<std::string>>> TomlReader::string_list(const toml::node& node,
                                                                  std::string_view what) const {
  const auto* array = node.as_array();
  if (!array) return wrong_type(node, what, "an array of strings");
  Located<std::vector<std::string>> out{{}, at(node), true};
  for (const toml::node& element : *array) {
    const auto* value = element.as_string();
    if (!value) return wrong_type(element, what, "an array of strings, each item a string");
    out.value.push_back(value->get());
  }
  return out;
}

Result<Located<int64_t>> TomlReader::integer(const toml::node& node, std::string_view what) const {
  const auto* value = node.as_integer();
  if (!value) return wrong_type(node, what, "an integer");
  return Located<int64_t>{value->get(), at(node), true};
}

Result<Located<uint64_t>> TomlReader::size(const toml::node& node, std::string_view what) const {
  if (const auto* number = node.as_integer()) {
    if (number->get() <= 0) return fail_at(at(node), "{}: a size must be positive", what);
    return Located<uint64_t>{static_cast<uint64_t>(number->get()), at(node), true};
  }
  const auto* text = node.as_string();
  if (!text) return wrong_type(node, what, "a size such as \"2G\"");
  auto bytes = parse_size(text->get());
  if (!bytes) return fail_at(at(node), "{}: {}", what, bytes.error().message);
  if (*bytes == 0) return fail_at(at(node), "{}: a size must be positive", what);
  return Located<uint64_t>{*bytes, at(node), true};
}

Result<bool> TomlReader::boolean(const toml::node& node, std::string_view what) const {
  const auto* value = node.as_boolean();
  if (!value) return wrong_type(node, what, "true or false");
  return value->get();
}

Result<uint32_t> TomlReader::mode(const toml::node& node, std::string_view what) const {
  int64_t value = -1;
  if (const auto* number = node.as_integer()) {
    value = number->get();
  } else if (const auto* text = node.as_string()) {
    std::string_view digits = text->get();
    if (digits.starts_with("0o")) digits.remove_prefix(2);
    auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value, 8);
    if (ec != std::errc() || end != digits.data() + digits.size() || digits.empty()) value = -1;
  } else {
    return wrong_type(node, what, "an octal mode such as \"0644\" or 0o644");
  }
  if (value < 0 || value > 07777)
    return fail_at(at(node), "{}: bad mode: expected an octal mode from 0000 to 7777, such as \"0644\"",
                   what);
  return static_cast<uint32_t>(value);
}

Result<std::filesystem::path> TomlReader::existing_file(const toml::node& node,
                                                        std::string_view what) const {
  KILN_ASSIGN(auto text, string(node, what));
  if (text.value.empty()) return fail_at(at(node), "{}: empty path", what);
  if (std::string problem = check_text_line(text.value); !problem.empty())
    return fail_at(at(node), "{}: {}: {}", what, shown_value(text.value), problem);
  std::filesystem::path path = text.value;
  if (path.is_relative()) path = base_dir_ / path;
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec))
    return fail_at(at(node), "{}: {}: no such file", what, path.string());
  return path;
}

Result<const toml::table*> TomlReader::table(const toml::node& node, std::string_view what) const {
  const auto* value = node.as_table();
  if (!value) return wrong_type(node, what, "a table");
  return value;
}

std::unexpected<Error> TomlReader::unknown_key(const toml::key& key, std::string_view section,
                                               std::span<const std::string_view> known) const {
  std::string_view suggestion = closest_match(key.str(), known);
  std::string where = section.empty() ? std::string("at the top level") : fmt::format("in [{}]", section);
  if (!suggestion.empty())
    return fail_at(at(key), "unknown key '{}' {}; did you mean '{}'?", key.str(), where, suggestion);
  std::string list;
  for (auto name : known) list += (list.empty() ? "" : ", ") + std::string(name);
  return fail_at(at(key), "unknown key '{}' {}; known keys: {}", key.str(), where, list);
}

}  // namespace kiln::recipes
