// Precompiled header of the torch translation units (model.cpp, runtime.cpp).
#pragma once
#include "compat.h"
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>
