# tests/cuda_emu/emu.cmake — the CPU emulation of the CUDA backend
# (README.md here), included by the top-level CMakeLists.txt when
# TAU2_CUDA_EMU is ON. It builds:
#   tau2_cuda_emu  kernels/*.cu rewritten by transform.py and compiled as
#                  C++ with emu_device.h force-included, plus the emulated
#                  CUDA runtime, cuBLAS GEMM and NCCL over shared memory;
#   emu_test_cuda_*  tests/cuda/test_*.c, unchanged, linked with the tau2
#                  archive (built with TAU2_HAVE_CUDA=1) and tau2_cuda_emu
#                  instead of tau2_cuda, cudart and cuBLAS;
# and registers the latter as ctest tests labelled cuda_emu.
if(NOT TAU2_HAVE_CUDA)
  message(FATAL_ERROR "TAU2_CUDA_EMU needs the CUDA headers and nvcc (the CUDA backend, TAU2_CUDA not OFF)")
endif()
if(NOT CMAKE_SYSTEM_PROCESSOR MATCHES "x86_64|AMD64|amd64")
  message(FATAL_ERROR "TAU2_CUDA_EMU: the emulator's fibers are written for x86-64")
endif()
enable_language(CXX)
find_package(Python3 REQUIRED COMPONENTS Interpreter)

set(TAU2_EMU_DIR ${PROJECT_SOURCE_DIR}/tests/cuda_emu)
set(TAU2_EMU_GEN ${CMAKE_BINARY_DIR}/cuda_emu_gen)
file(MAKE_DIRECTORY ${TAU2_EMU_GEN})
file(GLOB TAU2_EMU_KERNELS CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/kernels/*.cu)
file(GLOB TAU2_EMU_KERNEL_HEADERS CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/kernels/*.cuh ${PROJECT_SOURCE_DIR}/kernels/*.h)
# The kernels' own headers (*.cuh) may launch kernels too: rewritten under
# the same names beside the rewritten sources, where an #include "x.cuh" of
# a generated file finds them first.
set(TAU2_EMU_GENERATED)
set(TAU2_EMU_GENERATED_HEADERS)
set(TAU2_EMU_CUH ${TAU2_EMU_KERNEL_HEADERS})
list(FILTER TAU2_EMU_CUH INCLUDE REGEX "\\.cuh$")
foreach(cu ${TAU2_EMU_KERNELS} ${TAU2_EMU_DIR}/selftest.cu ${TAU2_EMU_CUH})
  get_filename_component(name ${cu} NAME)
  get_filename_component(base ${cu} NAME_WE)
  if(name MATCHES "\\.cuh$")
    set(out ${TAU2_EMU_GEN}/${name})
    list(APPEND TAU2_EMU_GENERATED_HEADERS ${out})
  else()
    set(out ${TAU2_EMU_GEN}/${base}.emu.cpp)
    list(APPEND TAU2_EMU_GENERATED ${out})
  endif()
  add_custom_command(OUTPUT ${out}
    COMMAND ${Python3_EXECUTABLE} ${TAU2_EMU_DIR}/transform.py ${cu} ${out}
    DEPENDS ${cu} ${TAU2_EMU_DIR}/transform.py
    COMMENT "cuda_emu: rewriting ${name} for the emulator"
    VERBATIM)
endforeach()
set_source_files_properties(${TAU2_EMU_GENERATED} ${TAU2_EMU_GEN}/selftest.emu.cpp PROPERTIES
  COMPILE_OPTIONS "-include;${TAU2_EMU_DIR}/emu_device.h;-Wno-unused-function;-Wno-unused-variable"
  OBJECT_DEPENDS "${TAU2_EMU_DIR}/emu_device.h;${TAU2_EMU_KERNEL_HEADERS};${TAU2_EMU_GENERATED_HEADERS}")

list(FILTER TAU2_EMU_GENERATED EXCLUDE REGEX "/selftest\\.emu\\.cpp$")
add_library(tau2_cuda_emu STATIC ${TAU2_EMU_GENERATED} ${TAU2_EMU_GENERATED_HEADERS}
  ${TAU2_EMU_DIR}/emu_runtime.cpp ${TAU2_EMU_DIR}/emu_cublas.cpp ${TAU2_EMU_DIR}/emu_nccl.cpp)
set_target_properties(tau2_cuda_emu PROPERTIES CXX_STANDARD 17 CXX_STANDARD_REQUIRED ON CXX_EXTENSIONS OFF)
# The kernels' float code must stay IEEE as on the GPU's _rn paths: no
# fast-math, no contraction into FMA.
target_compile_options(tau2_cuda_emu PRIVATE -ffp-contract=off -fno-fast-math)
# TAU2_CUDA_EMU_ASAN: the kernels and the emulated runtime under
# AddressSanitizer, so a kernel's out-of-bounds access to a device buffer,
# to dynamic or static shared memory, or to a thread's local array is
# reported (device buffers are allocated to the byte). The tau2 archive is
# not instrumented (configure with TAU2_SANITIZE for that too).
option(TAU2_CUDA_EMU_ASAN "Build the CUDA emulation's kernels under AddressSanitizer" OFF)
set(TAU2_EMU_ENV "")
if(TAU2_CUDA_EMU_ASAN)
  target_compile_options(tau2_cuda_emu PRIVATE -fsanitize=address -fno-omit-frame-pointer)
  target_link_options(tau2_cuda_emu INTERFACE -fsanitize=address)
  # leaks of MPI and OpenMP at exit are not the kernels' business
  set(TAU2_EMU_ENV "ASAN_OPTIONS=detect_leaks=0:abort_on_error=1")
endif()
target_include_directories(tau2_cuda_emu PUBLIC ${PROJECT_SOURCE_DIR}/src ${PROJECT_SOURCE_DIR}/kernels
  ${CUDAToolkit_INCLUDE_DIRS} ${NCCL_INCLUDE_DIR} PRIVATE ${CBLAS_INCLUDE_DIR})
# emu_cublas.cpp's products go through the CPU's BLAS.
target_link_libraries(tau2_cuda_emu PUBLIC ${BLAS_LIBRARIES})

# The tau2 archive (its objects already built with TAU2_HAVE_CUDA=1) with
# tau2's own dependencies, minus tau2_cuda and the CUDA libraries.
get_target_property(TAU2_EMU_DEPS tau2 LINK_LIBRARIES)
list(REMOVE_ITEM TAU2_EMU_DEPS tau2_cuda)
add_library(tau2_emu INTERFACE)
target_link_libraries(tau2_emu INTERFACE $<TARGET_FILE:tau2> tau2_cuda_emu ${TAU2_EMU_DEPS})
target_include_directories(tau2_emu INTERFACE $<TARGET_PROPERTY:tau2,INTERFACE_INCLUDE_DIRECTORIES>)
target_compile_definitions(tau2_emu INTERFACE $<TARGET_PROPERTY:tau2,INTERFACE_COMPILE_DEFINITIONS>)

file(GLOB TAU2_EMU_TESTS CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/tests/cuda/test_*.c)
foreach(src ${TAU2_EMU_TESTS})
  get_filename_component(name ${src} NAME_WE)
  tau2_test_program(emu_${name} ${src} tau2_emu)
  # Twice: threads in forward and in reverse order between barriers (a
  # missing __syncthreads fails in at least one of them, README.md). The
  # mid-size parity test once: it checks sizes, not orders, and takes a
  # minute; the memory plans' test once: it counts bytes.
  set(orders forward reverse)
  if(name STREQUAL "test_cuda_mid" OR name STREQUAL "test_cuda_memory_plan")
    set(orders forward)
  endif()
  foreach(order ${orders})
    set(tname emu_${name})
    if(order STREQUAL "reverse")
      set(tname emu_${name}_reverse)
    endif()
    add_test(NAME ${tname} COMMAND emu_${name})
    set_tests_properties(${tname} PROPERTIES SKIP_RETURN_CODE 77 LABELS cuda_emu TIMEOUT 1800 ENVIRONMENT
      "TAU2_DATA_DIR=${TAU2_TEST_DATA_DIR};OMP_WAIT_POLICY=passive;TAU2_CUDA_EMU_ORDER=${order};${TAU2_EMU_ENV}")
  endforeach()
endforeach()
# The inference test again with the tensor-core products of 5 to 32 rows
# (off by default: TAU2_CUDA_ROWS_MMA=1), as the CUDA build does.
add_test(NAME emu_test_cuda_infer_rows_mma COMMAND emu_test_cuda_infer)
set_tests_properties(emu_test_cuda_infer_rows_mma PROPERTIES SKIP_RETURN_CODE 77 LABELS cuda_emu TIMEOUT 1800
  ENVIRONMENT "TAU2_DATA_DIR=${TAU2_TEST_DATA_DIR};OMP_WAIT_POLICY=passive;TAU2_CUDA_ROWS_MMA=1;${TAU2_EMU_ENV}")

# The mid-size step again on the WMMA attention (attention_tc.cu; the
# default is attention_mma.cu's), as the CUDA build does: the bf16 step and
# the inference (the test leaves out its fp32 step, which no attention
# family reaches).
add_test(NAME emu_test_cuda_mid_wmma COMMAND emu_test_cuda_mid)
set_tests_properties(emu_test_cuda_mid_wmma PROPERTIES SKIP_RETURN_CODE 77 LABELS cuda_emu TIMEOUT 1800
  ENVIRONMENT "TAU2_DATA_DIR=${TAU2_TEST_DATA_DIR};OMP_WAIT_POLICY=passive;TAU2_CUDA_ATTENTION=wmma;${TAU2_EMU_ENV}")

# The MPI tests that need a GPU per rank (NCCL comms, the GPU engine with
# tensor and data parallelism), on the emulation: every rank sees
# TAU2_CUDA_EMU_DEVICES devices and the emulated NCCL moves data between
# the ranks' processes. Forward thread order only: the kernels' orders are
# covered by the single-rank tests above.
set(TAU2_EMU_MPI_TESTS ${PROJECT_SOURCE_DIR}/tests/mpi/test_comm_nccl.c ${PROJECT_SOURCE_DIR}/tests/mpi/test_qwen3_gpu_tp.c)
foreach(src ${TAU2_EMU_MPI_TESTS})
  get_filename_component(name ${src} NAME_WE)
  tau2_test_program(emu_${name} ${src} tau2_emu)
  foreach(np 2 4)
    add_test(NAME emu_${name}_np${np} COMMAND ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} ${np}
      ${TAU2_MPIEXEC_FLAGS} ${MPIEXEC_PREFLAGS} $<TARGET_FILE:emu_${name}> ${MPIEXEC_POSTFLAGS})
    set_tests_properties(emu_${name}_np${np} PROPERTIES PROCESSORS ${np} SKIP_RETURN_CODE 77 LABELS cuda_emu
      TIMEOUT 1800 ENVIRONMENT
      "OMP_NUM_THREADS=1;OMP_WAIT_POLICY=passive;TAU2_DATA_DIR=${TAU2_TEST_DATA_DIR};TAU2_CUDA_EMU_DEVICES=4;TAU2_CUDA_EMU_NCCL_TIMEOUT=600;${TAU2_EMU_ENV}")
  endforeach()
endforeach()

# The emulator's own checks (barriers, shuffles, bf16, launch errors, the
# exited-thread barrier report).
add_executable(emu_selftest ${TAU2_EMU_GEN}/selftest.emu.cpp)
set_target_properties(emu_selftest PROPERTIES CXX_STANDARD 17 CXX_STANDARD_REQUIRED ON CXX_EXTENSIONS OFF)
target_link_libraries(emu_selftest PRIVATE tau2_cuda_emu)
add_test(NAME emu_selftest COMMAND emu_selftest)
set_tests_properties(emu_selftest PROPERTIES LABELS cuda_emu ENVIRONMENT "${TAU2_EMU_ENV}")

# The program itself on the emulation, for the job test that runs the tiny
# run with train_device and rollout_device "cuda" (tests/job/test_job_train_gpu.sh).
add_executable(emu_tau2_hpc ${PROJECT_SOURCE_DIR}/src/app/main.c)
add_dependencies(emu_tau2_hpc tau2)
target_link_libraries(emu_tau2_hpc PRIVATE tau2_emu)

# The tiny job at tensor_parallel 2 on two emulated GPUs (the script that
# waits for 2 real GPUs otherwise): the job's TP and NCCL plumbing end to
# end, about 2 minutes on 2 cores.
add_test(NAME emu_job_train_gpu_tp COMMAND bash ${PROJECT_SOURCE_DIR}/tests/job/test_job_train_gpu_tp.sh
  $<TARGET_FILE:emu_tau2_hpc>)
set_tests_properties(emu_job_train_gpu_tp PROPERTIES RUN_SERIAL TRUE TIMEOUT 1500 SKIP_RETURN_CODE 77
  LABELS cuda_emu ENVIRONMENT
  "TAU2_DATA_DIR=${TAU2_TEST_DATA_DIR};TAU2_SOURCE_DIR=${PROJECT_SOURCE_DIR};TAU2_MPIEXEC=${TAU2_MPIEXEC_LINE};OMP_NUM_THREADS=1;OMPI_MCA_btl_vader_single_copy_mechanism=none;OMP_WAIT_POLICY=passive;TAU2_TEST_GPUS=2;TAU2_CUDA_EMU_DEVICES=2;TAU2_CUDA_EMU_NCCL_TIMEOUT=600;${TAU2_EMU_ENV}")

# The job's GPU memory on one emulated GPU: the phases with offloads, a
# device made small (TAU2_CUDA_EMU_MEMORY_MIB) to refuse a plan without
# them, and the check again of a trajectory longer than planned.
add_test(NAME emu_job_gpu_memory COMMAND bash ${PROJECT_SOURCE_DIR}/tests/job/test_job_gpu_memory.sh
  $<TARGET_FILE:emu_tau2_hpc>)
set_tests_properties(emu_job_gpu_memory PROPERTIES RUN_SERIAL TRUE TIMEOUT 1500 SKIP_RETURN_CODE 77
  LABELS cuda_emu ENVIRONMENT
  "TAU2_DATA_DIR=${TAU2_TEST_DATA_DIR};TAU2_SOURCE_DIR=${PROJECT_SOURCE_DIR};TAU2_MPIEXEC=${TAU2_MPIEXEC_LINE};OMP_NUM_THREADS=1;OMPI_MCA_btl_vader_single_copy_mechanism=none;OMP_WAIT_POLICY=passive;TAU2_TEST_GPUS=1;TAU2_CUDA_EMU_DEVICES=1;${TAU2_EMU_ENV}")

# The GPU benchmarks on the emulation at tiny sizes: they start, run every
# kernel path they time and print their report, so that a session with a
# GPU spends its time measuring (their numbers here mean nothing).
set(TAU2_EMU_BENCH_ARGS_bench_attention_gpu --seq-len 100 --seqs 2 --heads 4 --kv-heads 2 --dim 64 --iters 1)
set(TAU2_EMU_BENCH_ARGS_bench_train_gpu --config tiny --seq-len 64 --seqs 2 --steps 1 --micro 2 --recompute)
set(TAU2_EMU_BENCH_ARGS_bench_decode_gpu --config tiny --batches 1,3 --contexts 40 --steps 2)
set(TAU2_EMU_BENCH_ARGS_bench_offload_gpu --config tiny --iters 1)
foreach(name bench_attention_gpu bench_train_gpu bench_decode_gpu bench_offload_gpu)
  add_executable(emu_${name} ${PROJECT_SOURCE_DIR}/benchmarks/${name}.c)
  add_dependencies(emu_${name} tau2)
  target_link_libraries(emu_${name} PRIVATE tau2_emu)
  add_test(NAME emu_${name} COMMAND emu_${name} ${TAU2_EMU_BENCH_ARGS_${name}})
  set_tests_properties(emu_${name} PROPERTIES LABELS cuda_emu TIMEOUT 600 ENVIRONMENT
    "OMP_WAIT_POLICY=passive;${TAU2_EMU_ENV}")
endforeach()
