// Filled in by the issue-6 work.
#include "agent/enroll.h"
