// Filled in by the issue-6 work.
#include "agent/session.h"
