#include "builder/apt_sources.h"

#include <algorithm>
#include <sstream>
#include <vector>

#include "base/files.h"

namespace kiln {
namespace {

struct Source {
  std::vector<std::string> types;
  std::vector<std::string> uris;
  std::vector<std::string> suites;
};

std::vector<std::string> words(std::string_view text) {
  std::vector<std::string> out;
  std::istringstream in{std::string(text)};
  for (std::string word; in >> word;) out.push_back(word);
  return out;
}

// One-line style: "deb [options] URI SUITE COMPONENT..."
std::vector<Source> parse_list(std::string_view text) {
  std::vector<Source> sources;
  std::istringstream in{std::string(text)};
  for (std::string line; std::getline(in, line);) {
    line = line.substr(0, line.find('#'));
    auto fields = words(line);
    if (fields.size() < 3 || fields[0] != "deb") continue;
    size_t next = 1;
    if (fields[1].starts_with('[')) {
      while (next < fields.size() && !fields[next].ends_with(']')) ++next;
      ++next;
    }
    if (next + 1 >= fields.size()) continue;
    sources.push_back({{"deb"}, {fields[next]}, {fields[next + 1]}});
  }
  return sources;
}

// deb822 style: stanzas of "Field: value" separated by blank lines.
std::vector<Source> parse_deb822(std::string_view text) {
  std::vector<Source> sources;
  Source current;
  auto flush = [&] {
    if (!current.uris.empty()) sources.push_back(current);
    current = {};
  };
  std::istringstream in{std::string(text)};
  for (std::string line; std::getline(in, line);) {
    if (line.starts_with('#')) continue;
    if (line.find_first_not_of(" \t") == std::string::npos) {
      flush();
      continue;
    }
    auto colon = line.find(':');
    if (colon == std::string::npos || line.starts_with(' ')) continue;
    std::string field = line.substr(0, colon);
    std::transform(field.begin(), field.end(), field.begin(), ::tolower);
    auto values = words(line.substr(colon + 1));
    if (field == "types") current.types = values;
    if (field == "uris") current.uris = values;
    if (field == "suites") current.suites = values;
  }
  flush();
  return sources;
}

std::string host_codename(const std::filesystem::path& os_release) {
  auto text = read_file(os_release);
  if (!text) return {};
  std::istringstream in(*text);
  for (std::string line; std::getline(in, line);) {
    if (!line.starts_with("VERSION_CODENAME=")) continue;
    std::string value = line.substr(17);
    std::erase(value, '"');
    return value;
  }
  return {};
}

}  // namespace

std::string host_debian_mirror(const std::filesystem::path& etc_apt,
                               const std::filesystem::path& os_release) {
  std::vector<Source> sources;
  if (auto text = read_file(etc_apt / "sources.list")) sources = parse_list(*text);
  std::vector<std::filesystem::path> parts;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(etc_apt / "sources.list.d", ec))
    parts.push_back(entry.path());
  std::sort(parts.begin(), parts.end());
  for (const auto& part : parts) {
    auto text = read_file(part);
    if (!text) continue;
    auto more = part.extension() == ".sources" ? parse_deb822(*text)
                : part.extension() == ".list"  ? parse_list(*text)
                                               : std::vector<Source>{};
    sources.insert(sources.end(), more.begin(), more.end());
  }
  std::string codename = host_codename(os_release);
  for (const Source& source : sources) {
    bool is_deb = source.types.empty() ||
                  std::find(source.types.begin(), source.types.end(), "deb") != source.types.end();
    bool main_suite = std::find(source.suites.begin(), source.suites.end(), codename) != source.suites.end();
    if (is_deb && main_suite && !codename.empty() && !source.uris.empty()) return source.uris.front();
  }
  return "http://deb.debian.org/debian";
}

}  // namespace kiln
