#include "formats/tree/deb822.h"

#include <strings.h>

namespace kiln {

std::string_view Deb822Paragraph::get(std::string_view field) const {
  for (const auto& [name, value] : fields_)
    if (name.size() == field.size() && ::strncasecmp(name.data(), field.data(), field.size()) == 0) return value;
  return {};
}

void for_each_paragraph(std::string_view text, const std::function<void(const Deb822Paragraph&)>& visit) {
  Deb822Paragraph paragraph;
  auto flush = [&] {
    if (!paragraph.empty()) visit(paragraph);
    paragraph = {};
  };
  while (true) {
    size_t newline = text.find('\n');
    std::string_view line = text.substr(0, newline);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) {
      flush();
    } else if (line.front() != ' ' && line.front() != '\t' && line.front() != '#') {
      size_t colon = line.find(':');
      if (colon != std::string_view::npos) {
        std::string_view value = line.substr(colon + 1);
        while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
        while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.remove_suffix(1);
        paragraph.add(line.substr(0, colon), value);
      }
    }
    if (newline == std::string_view::npos) break;
    text.remove_prefix(newline + 1);
  }
  flush();
}

}  // namespace kiln
