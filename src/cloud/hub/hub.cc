// Filled in by the issue-6 work.
#include "cloud/hub/hub.h"
