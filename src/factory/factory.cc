// Filled in by the issue-6 work.
#include "factory/factory.h"
