#include "feeds/virt_builder_index.h"

#include <algorithm>
#include <set>

namespace kiln {
namespace {

bool is_id_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
         c == '.';
}

// "name", "checksum[sha512]": what virt-builder's scanner takes as a key.
bool is_valid_key(std::string_view key) {
  size_t open = key.find('[');
  std::string_view base = key.substr(0, open);
  if (base.empty() || !std::all_of(base.begin(), base.end(), is_id_char)) return false;
  if (open == std::string_view::npos) return true;
  if (!key.ends_with(']') || key.size() < open + 3) return false;
  std::string_view sub = key.substr(open + 1, key.size() - open - 2);
  return std::all_of(sub.begin(), sub.end(), [](char c) { return is_id_char(c) || c == ','; });
}

bool is_valid_id(std::string_view id) { return !id.empty() && std::all_of(id.begin(), id.end(), is_id_char); }

}  // namespace

const std::string* IndexSection::get(std::string_view key) const {
  for (const auto& [name, value] : fields)
    if (name == key) return &value;
  return nullptr;
}

void IndexSection::set(const std::string& key, const std::string& value) {
  for (auto& [name, old] : fields)
    if (name == key) {
      old = value;
      return;
    }
  fields.emplace_back(key, value);
}

IndexSection* VirtBuilderIndex::find(std::string_view id) {
  for (IndexSection& section : sections)
    if (section.id == id) return &section;
  return nullptr;
}

void VirtBuilderIndex::upsert(IndexSection section) {
  if (IndexSection* old = find(section.id)) *old = std::move(section);
  else sections.push_back(std::move(section));
}

Result<VirtBuilderIndex> parse_virt_builder_index(std::string_view text, std::string_view file_name) {
  VirtBuilderIndex index;
  int line_number = 0;
  std::set<std::string> ids;
  while (!text.empty()) {
    ++line_number;
    size_t newline = text.find('\n');
    std::string_view line = text.substr(0, newline);
    text.remove_prefix(newline == std::string_view::npos ? text.size() : newline + 1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    Location where{std::string(file_name), line_number, 0};
    if (line.starts_with(' ') || line.starts_with('\t')) {
      if (index.sections.empty() || index.sections.back().fields.empty())
        return fail_at(where, "a continuation line (starting with a space) follows no field");
      std::string& value = index.sections.back().fields.back().second;
      value += '\n';
      value += line.substr(1);
      continue;
    }
    if (line.empty() || line.starts_with('#')) continue;
    if (line.starts_with('[')) {
      if (!line.ends_with(']')) return fail_at(where, "a section line must be '[os-version]'");
      std::string id(line.substr(1, line.size() - 2));
      if (!is_valid_id(id)) return fail_at(where, "'{}' is not a valid os-version (letters, digits, '-', '_', '.')", id);
      if (!ids.insert(id).second) return fail_at(where, "section [{}] appears twice", id);
      index.sections.push_back({id, {}});
      continue;
    }
    size_t eq = line.find('=');
    if (eq == std::string_view::npos) return fail_at(where, "expected 'key=value', '[os-version]' or a comment");
    if (index.sections.empty()) return fail_at(where, "a field before the first [os-version] section");
    std::string key(line.substr(0, eq));
    if (!is_valid_key(key)) return fail_at(where, "'{}' is not a valid field name", key);
    if (index.sections.back().get(key)) return fail_at(where, "field '{}' appears twice in [{}]", key, index.sections.back().id);
    index.sections.back().fields.emplace_back(key, std::string(line.substr(eq + 1)));
  }
  return index;
}

Result<std::string> write_virt_builder_index(const VirtBuilderIndex& index) {
  std::string out;
  for (const IndexSection& section : index.sections) {
    if (!is_valid_id(section.id))
      return fail(ErrorKind::kBadInput, "'{}' is not a valid virt-builder os-version", section.id);
    if (!out.empty()) out += '\n';
    out += '[' + section.id + "]\n";
    for (const auto& [key, value] : section.fields) {
      if (!is_valid_key(key)) return fail(ErrorKind::kBadInput, "'{}' is not a valid virt-builder field", key);
      out += key + '=';
      // Every further line of a value starts with a space, even a blank one.
      for (char c : value) {
        out += c;
        if (c == '\n') out += ' ';
      }
      out += '\n';
    }
  }
  return out;
}

}  // namespace kiln
