#include "cg2w.h"
