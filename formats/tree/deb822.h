// Deb822: the "Field: value" paragraphs of Debian's control-file syntax, as
// dpkg's status file and apt's Packages indexes are written. Only what kiln
// reads is kept: a field's first line (continuation lines are skipped; the
// fields kiln reads are single-line).
#pragma once

#include <functional>
#include <string_view>
#include <utility>
#include <vector>

namespace kiln {

class Deb822Paragraph {
 public:
  void add(std::string_view field, std::string_view value) { fields_.emplace_back(field, value); }
  bool empty() const { return fields_.empty(); }
  // The field's value, "" when absent. Field names compare case-insensitively, as in deb822(5).
  std::string_view get(std::string_view field) const;

 private:
  std::vector<std::pair<std::string_view, std::string_view>> fields_;
};

// Calls `visit` for each paragraph of `text`; the views point into `text`.
void for_each_paragraph(std::string_view text, const std::function<void(const Deb822Paragraph&)>& visit);

}  // namespace kiln
