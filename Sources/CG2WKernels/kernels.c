#include "g2w_kernels.h"
