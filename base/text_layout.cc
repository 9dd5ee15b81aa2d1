#include "base/text_layout.h"

namespace kiln {

std::string wrap_text(std::string_view text, size_t indent, std::string_view bullet, size_t width) {
  std::string out, line = bullet.empty() ? std::string(indent, ' ') : std::string(bullet);
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find(' ', start);
    if (end == std::string_view::npos) end = text.size();
    std::string_view word = text.substr(start, end - start);
    if (line.size() > indent && line.size() + 1 + word.size() > width) {
      out += line + "\n";
      line = std::string(indent, ' ');
    }
    if (line.size() > indent) line += ' ';
    line += word;
    start = end + 1;
  }
  return out + line + "\n";
}

std::string indent_lines(std::string_view text, std::string_view prefix) {
  std::string out;
  while (!text.empty()) {
    size_t newline = text.find('\n');
    out += std::string(prefix) + std::string(text.substr(0, newline)) + "\n";
    if (newline == std::string_view::npos) break;
    text.remove_prefix(newline + 1);
  }
  return out;
}

}  // namespace kiln
