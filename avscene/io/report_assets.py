"""The style and scripts of the report pages, inlined into every page (no network, no external file).

Colours: Okabe–Ito for classes (set per class by the page), inferno for audio heat (the
scale and its key are set by the page, :func:`avscene.io.draw.heat_levels`), a dashed frame
for a class that is reported but not predicted,
text at WCAG AA contrast. Layout: one column that reflows from phone width to a
desktop; each timeline scrolls sideways on its own when its frames need more room
than the screen, so no layout depends on how many classes or frames there are.

The scripts also write what a reader (or a test) needs to know into the DOM:
``#page-status`` gets ``data-errors`` (script errors, failed image or audio loads;
listed in ``#page-errors``), ``data-images`` / ``data-images-ok`` (images decoded,
``naturalWidth > 0``) and ``data-audio-durations`` (each player's duration once its
metadata loaded).
"""

from __future__ import annotations

CSS = """
:root{--fg:#1b1b1b;--muted:#4a4a4a;--bg:#fff;--panel:#f4f4f2;--line:#c8c8c4;--accent:#0072b2}
*{box-sizing:border-box}
body{margin:0;font:16px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;color:var(--fg);background:var(--bg)}
header,main,footer{max-width:1200px;margin:0 auto;padding:0 16px}
header{padding-top:12px}
h1{font-size:1.45rem;margin:.4em 0 .1em;overflow-wrap:anywhere}
h2{font-size:1.15rem;margin:1.2em 0 .4em;border-bottom:1px solid var(--line);padding-bottom:.2em}
h3{font-size:1rem;margin:0;display:flex;gap:.5em;align-items:center;flex-wrap:wrap}
.meta{color:var(--muted);margin:.2em 0}
.swatch{display:inline-block;width:.9em;height:.9em;border:1px solid #000;border-radius:2px;flex:none}
.badge{font-size:.8rem;font-weight:600;padding:.05em .5em;border-radius:1em;border:1px solid var(--fg);white-space:nowrap}
.badge.heard_and_seen{background:#1b1b1b;color:#fff}.badge.neither{color:var(--muted);border-style:dashed}
.badge.status{border-style:dashed;font-weight:400;color:var(--muted)}
.timeline-row.not-predicted{border-style:dashed}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:.3em .5em;border-bottom:1px solid var(--line);vertical-align:middle}
.scores{table-layout:fixed}.scores .c-name{width:22%}.scores .c-bar{width:38%}.scores .c-num{width:10%}
.scores .c-dec{width:12%}.scores .c-hs{width:18%}td{overflow-wrap:anywhere}
details{margin:.5em 0}summary{cursor:pointer;padding:.3em 0;color:var(--accent)}
.scores tr.predicted td:first-child{font-weight:700}
.bar .track{position:relative;height:14px;background:var(--panel);border:1px solid var(--line)}
.bar .fill{position:absolute;top:0;bottom:0;left:0}
.bar .thr{position:absolute;top:-4px;bottom:-4px;width:2px;background:#000}
.num{font-variant-numeric:tabular-nums;text-align:right}
.legend{display:flex;flex-wrap:wrap;gap:.4em 1.2em;color:var(--muted);font-size:.9rem;margin:.3em 0 .6em}
.heatkey{display:inline-block;width:40px;height:10px;vertical-align:middle;border:1px solid var(--line)}
.timeline-row{border:1px solid var(--line);border-radius:6px;padding:8px 10px;margin:0 0 12px;background:#fff}
.scroll{overflow-x:auto;margin-top:6px}
.tl{position:relative;min-width:100%}
.lane{position:relative;height:14px;margin:3px 0 3px 64px;background:var(--panel)}
.lane::before{content:attr(data-name);position:absolute;right:100%;margin-right:6px;font-size:.75rem;line-height:14px;color:var(--muted);white-space:nowrap}
.lane.heat{height:18px}.lane.heat::before{line-height:18px}
.lane svg{position:absolute;inset:0;width:100%;height:100%;display:block}
.seg{position:absolute;top:1px;bottom:1px;border:1px solid #000;border-radius:2px;min-width:2px}
.thumbs{position:relative;margin:6px 0 0 64px}
.thumbs .thumb{width:min(120px,calc(100% / var(--n) - 6px))}
.thumb{position:absolute;top:0;transform:translateX(-50%);padding:0;border:2px solid transparent;background:none;cursor:zoom-in;line-height:0}
.thumb img{width:100%;height:auto;display:block}
.thumb:focus-visible,.thumb:hover{border-color:var(--accent);outline:none}
.axis{position:relative;height:18px;margin:0 0 0 64px;font-size:.72rem;color:var(--muted)}
.axis span{position:absolute;transform:translateX(-50%);white-space:nowrap}
.playhead{position:absolute;top:0;bottom:0;width:2px;background:var(--accent);pointer-events:none;display:none}
.players{display:grid;grid-template-columns:repeat(auto-fill,minmax(280px,1fr));gap:10px}
figure{margin:0;padding:8px;border:1px solid var(--line);border-radius:6px}
figcaption{font-size:.9rem;margin-bottom:4px}
audio{width:100%}
.note{background:#fff8e1;border:1px solid #e6a100;border-radius:6px;padding:.4em .8em}
pre{background:var(--panel);padding:.6em;overflow-x:auto;white-space:pre-wrap;overflow-wrap:anywhere}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.2em 1em}dt{font-weight:600}dd{margin:0;overflow-wrap:anywhere}
dialog{max-width:min(96vw,1000px);padding:10px;border:1px solid #000}
dialog img{width:min(88vw,640px);max-width:100%;height:auto;display:block}
dialog::backdrop{background:rgba(0,0,0,.6)}
button{font:inherit}
th button{border:0;background:none;font-weight:700;cursor:pointer;padding:.1em .2em;color:var(--fg)}
th button::after{content:" \2195";color:var(--muted)}th[aria-sort=ascending] button::after{content:" \25B2"}
th[aria-sort=descending] button::after{content:" \25BC"}th button:focus-visible{outline:2px solid var(--accent)}
.close{margin-top:8px;padding:.3em 1em}
#page-errors:empty{display:none}
#page-errors{color:#a00}
@media (max-width:600px){body{font-size:15px}.lane,.thumbs,.axis{margin-left:52px}
 .scores{table-layout:auto}.scores th:nth-child(4),.scores td:nth-child(4){display:none}.scores td.bar{min-width:90px}}
.num{white-space:nowrap}
"""

# Runs first: collects errors before anything else can fail.
STATUS_JS = """
(function(){var errs=[];window.__avsceneErrors=errs;
function note(m){errs.push(String(m));var ul=document.getElementById('page-errors');
 if(ul){var li=document.createElement('li');li.textContent=m;ul.appendChild(li);}
 var st=document.getElementById('page-status');if(st)st.setAttribute('data-errors',String(errs.length));}
window.__avsceneNote=note;
window.addEventListener('error',function(e){var t=e.target;
 if(t&&t!==window&&(t.tagName==='IMG'||t.tagName==='AUDIO'||t.tagName==='SOURCE'))note('failed to load '+t.tagName.toLowerCase()+' '+(t.getAttribute('alt')||t.getAttribute('aria-label')||''));
 else note('script error: '+(e.message||e));},true);
window.addEventListener('unhandledrejection',function(e){note('unhandled rejection: '+e.reason);});
var ce=console.error;console.error=function(){note('console.error: '+Array.prototype.join.call(arguments,' '));ce.apply(console,arguments);};
})();
"""

PAGE_JS = """
(function(){
var st=document.getElementById('page-status');
function check(){var imgs=[].slice.call(document.querySelectorAll('img[src]')),ok=0;
 imgs.forEach(function(i){if(i.complete&&i.naturalWidth>0)ok++;});
 st.setAttribute('data-images',imgs.length);st.setAttribute('data-images-ok',ok);
 var d=[].slice.call(document.querySelectorAll('audio')).map(function(a){return isFinite(a.duration)?a.duration.toFixed(3):'NaN';});
 st.setAttribute('data-audio-durations',d.join(' '));
 st.setAttribute('data-rows',document.querySelectorAll('.timeline-row').length);}
[].slice.call(document.querySelectorAll('audio')).forEach(function(a){a.addEventListener('loadedmetadata',check);});
window.addEventListener('load',check);check();
var dlg=document.getElementById('viewer'),big=document.getElementById('viewer-img'),cap=document.getElementById('viewer-cap');
[].slice.call(document.querySelectorAll('.thumb')).forEach(function(b){b.addEventListener('click',function(){
 var im=b.querySelector('img');big.src=im.src;big.alt=im.alt;cap.textContent=im.alt;
 if(dlg.showModal)dlg.showModal();else dlg.setAttribute('open','');});});
document.getElementById('viewer-close').addEventListener('click',function(){dlg.close?dlg.close():dlg.removeAttribute('open');});
var main=document.querySelector('audio[data-kind=original]'),D=parseFloat(document.body.getAttribute('data-duration'))||0;
if(main&&D>0){var heads=[].slice.call(document.querySelectorAll('.playhead'));
 main.addEventListener('timeupdate',function(){var x=Math.min(100,100*main.currentTime/D);
  heads.forEach(function(h){h.style.display='block';h.style.left=x+'%';});});}
})();
"""

INDEX_JS = """
(function(){
var tb=document.querySelector('#videos tbody'),rows=[].slice.call(tb.rows),sel=document.getElementById('filter');
var st=document.getElementById('page-status');
function show(){var c=sel.value,n=0;rows.forEach(function(r){var on=!c||(' '+r.getAttribute('data-classes')+' ').indexOf(' '+c+' ')>=0;
 r.hidden=!on;if(on)n++;});document.getElementById('shown').textContent=n+' of '+rows.length+' shown';st.setAttribute('data-shown',n);}
sel.addEventListener('change',show);
[].slice.call(document.querySelectorAll('th button')).forEach(function(b,ci){b.addEventListener('click',function(){
 var k=b.getAttribute('data-key'),dir=b.getAttribute('data-dir')==='asc'?'desc':'asc';
 [].slice.call(document.querySelectorAll('th button')).forEach(function(o){o.removeAttribute('data-dir');o.parentNode.removeAttribute('aria-sort');});
 b.setAttribute('data-dir',dir);b.parentNode.setAttribute('aria-sort',dir==='asc'?'ascending':'descending');
 rows.sort(function(x,y){var a=x.getAttribute('data-'+k),c=y.getAttribute('data-'+k),fa=parseFloat(a),fc=parseFloat(c);
  var r=(!isNaN(fa)&&!isNaN(fc))?fa-fc:a.localeCompare(c);return dir==='asc'?r:-r;});
 rows.forEach(function(r){tb.appendChild(r);});st.setAttribute('data-sorted',k+' '+dir);});});
function imgs(){var all=[].slice.call(document.querySelectorAll('img[src]')),ok=0;all.forEach(function(i){if(i.complete&&i.naturalWidth>0)ok++;});
 st.setAttribute('data-images',all.length);st.setAttribute('data-images-ok',ok);}
window.addEventListener('load',imgs);imgs();
var h=new URLSearchParams(location.hash.slice(1));  // #class=violin&sort=duration:desc: a link that keeps the view
if(h.get('class'))sel.value=h.get('class');show();
if(h.get('sort')){var q=h.get('sort').split(':'),b=document.querySelector('th button[data-key="'+q[0]+'"]');
 if(b){b.setAttribute('data-dir',q[1]==='desc'?'asc':'desc');b.click();}}
})();
"""
