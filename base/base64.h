// Base64 (RFC 4648, with padding) through OpenSSL: binary content in text
// formats (tree patches, OpenSSH keys).
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace kiln {

std::string base64_encode(std::string_view data);
// The decoded bytes, or nullopt for text that is not whole, padded base64.
std::optional<std::string> base64_decode(std::string_view text);

}  // namespace kiln
