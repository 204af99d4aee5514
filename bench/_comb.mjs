import { loadRecon } from "@tile-compile/recon-native";
const nat = loadRecon("native");
const W=2048,H=Number(process.env.H ?? 320),N=Number(process.env.N ?? 16);
let s = 12345; const rnd = () => ((s = (s * 1103515245 + 12345) >>> 0) / 4294967296);
const frames = Array.from({length:N}, () => { const a = new Float32Array(W*H); for (let i=0;i<a.length;i++){ const u = rnd(); a[i] = u < 0.01 ? 5000*rnd() : 500 + 20*((rnd()+rnd()+rnd()+rnd()-2)*1.7); } return a; });
for (const mode of ["m","w","mean"]) { let b=1e9; for (let k=0;k<5;k++){ const t=performance.now(); await (mode==="m"? nat.combine(frames,{method:"median"}) : mode==="w" ? nat.combine(frames,{rejection:"winsorized"}) : nat.combine(frames)); b=Math.min(b,performance.now()-t);} console.log(mode, b.toFixed(1)); }
