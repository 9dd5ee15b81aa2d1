// TextLayout: prose laid out for an 80-column terminal, as the generated
// references (`kiln help recipe`, `kiln help container`) print it.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace kiln {

// Wraps `text` at `width` columns, breaking at spaces. Each line starts with
// `indent` spaces; the first starts with `bullet` instead when one is given
// ("  - "). A word longer than a line stands alone on its line. Ends with a
// newline.
std::string wrap_text(std::string_view text, size_t indent, std::string_view bullet = {}, size_t width = 78);

// Every line of `text` with `prefix` before it, each ending in a newline; a
// final newline of `text` does not add an empty line.
std::string indent_lines(std::string_view text, std::string_view prefix);

}  // namespace kiln
