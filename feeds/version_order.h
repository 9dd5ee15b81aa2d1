// Image versions in order, as dpkg orders package versions ("1.0" < "1.0.1"
// < "1.1" < "1.10", "1.0~rc1" < "1.0", "2:0.9" > "1.5"), so that a recipe's
// `version` sorts the way a Debian user expects when pull looks for the
// newest image and refuses a downgrade.
#pragma once

#include <string_view>

namespace kiln {

// Negative, zero or positive as `a` is older than, the same as or newer than `b`.
int compare_versions(std::string_view a, std::string_view b);

}  // namespace kiln
