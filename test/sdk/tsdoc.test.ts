import assert from 'node:assert/strict'
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { describe, it } from 'node:test'
import ts from 'typescript'

/** Every export of @switchboard/client (and every public member of its classes and interfaces) carries TSDoc. */
const srcDir = fileURLToPath(new URL('../../packages/client/src/', import.meta.url))

function undocumented(file: string): string[] {
  const text = readFileSync(join(srcDir, file), 'utf8')
  const sf = ts.createSourceFile(file, text, ts.ScriptTarget.ES2022, true)
  const missing: string[] = []
  const has = (n: ts.Node) => ts.getJSDocCommentsAndTags(n).length > 0
  const exported = (n: ts.Node) => ts.canHaveModifiers(n) && (ts.getModifiers(n) ?? []).some((m) => m.kind === ts.SyntaxKind.ExportKeyword)
  const nameOf = (n: ts.Node) => ((n as { name?: ts.Node }).name?.getText(sf) ?? '?')
  for (const st of sf.statements) {
    if (!exported(st) || ts.isExportDeclaration(st)) continue
    const target = ts.isVariableStatement(st) ? st : st
    const name = ts.isVariableStatement(st) ? st.declarationList.declarations.map((d) => d.name.getText(sf)).join(',') : nameOf(st)
    if (!has(target)) missing.push(`${file}: ${name}`)
    if (ts.isClassDeclaration(st) || ts.isInterfaceDeclaration(st)) {
      for (const m of st.members) {
        const mods = ts.canHaveModifiers(m) ? (ts.getModifiers(m) ?? []) : []
        if (mods.some((x) => x.kind === ts.SyntaxKind.PrivateKeyword || x.kind === ts.SyntaxKind.ProtectedKeyword)) continue
        if (ts.isConstructorDeclaration(m) && m.parameters.length === 0) continue
        const mname = m.name?.getText(sf) ?? (ts.isConstructorDeclaration(m) ? 'constructor' : '?')
        if (mname.startsWith('#')) continue
        // Self-explanatory data fields of wire types are documented by their interface.
        if (ts.isInterfaceDeclaration(st) && ts.isPropertySignature(m)) continue
        if (!has(m)) missing.push(`${file}: ${name}.${mname}`)
      }
    }
  }
  return missing
}

describe('TSDoc', () => {
  it('on every export of packages/client/src and every public class or interface method', () => {
    const files = readdirSync(srcDir).filter((f) => f.endsWith('.ts'))
    assert.ok(files.includes('index.ts') && files.includes('client.ts'))
    assert.deepEqual(files.flatMap(undocumented), [])
  })
})
