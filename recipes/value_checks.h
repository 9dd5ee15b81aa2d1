// Checks for the string values recipes hold. Each returns what is wrong with
// the value in words for the user, or "" when it is fine.
#pragma once

#include <string>
#include <string_view>

namespace kiln {

// One line of text with no control characters (NUL, newline, ESC...): for
// paths, file names and anything else that ends up in a C string or a line.
std::string check_text_line(std::string_view value);
std::string check_image_name(std::string_view value);
std::string check_version(std::string_view value);    // image.version: becomes part of file names
std::string check_word(std::string_view value);       // suites, components
std::string check_package(std::string_view value);    // apt-get install arguments
std::string check_module(std::string_view value);     // kernel module names
std::string check_mirror(std::string_view value);
std::string check_fs_label(std::string_view value);
std::string check_hostname(std::string_view value);
std::string check_timezone(std::string_view value);
std::string check_locale(std::string_view value);
std::string check_user_name(std::string_view value);
std::string check_image_path(std::string_view value);  // absolute, no "..", no "//", check_text_line
std::string check_mountpoint(std::string_view value);  // check_image_path, or "/"
std::string check_lvm_name(std::string_view value);    // volume group and logical volume names
std::string check_mapping_name(std::string_view value);  // /dev/mapper/NAME
std::string check_cipher(std::string_view value);      // cipher-mode-iv, e.g. aes-xts-plain64

}  // namespace kiln
