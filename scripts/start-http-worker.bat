@echo off
rem The seed's launcher for Windows. morag-supervisor runs on Linux only (it pins children
rem to GPUs and cores with Linux APIs), so this runs scripts/start-http-worker.sh inside
rem WSL2, from the current directory, with the same flags and the same .env:
rem
rem   copy configs\http-worker.env.example .env      (then edit it)
rem   scripts\start-http-worker.bat [--worker-type cpu ...] [-- MORAG-SUPERVISOR FLAGS ...]
rem
rem Inside WSL the clone needs `make install` (or pip install -e ".[all]"); CUDA works there
rem with NVIDIA's Windows driver. Without WSL, use Docker Desktop:
rem   docker compose -f docker-compose.workers.yml up
setlocal
where wsl >nul 2>nul
if errorlevel 1 (
  echo start-http-worker.bat: morag-supervisor runs on Linux only and WSL was not found; install WSL2 ^(wsl --install^) or run the worker in Docker Desktop: docker compose -f docker-compose.workers.yml up 1>&2
  exit /b 2
)
wsl bash "$(wslpath -u '%~dp0start-http-worker.sh')" %*
exit /b %errorlevel%
